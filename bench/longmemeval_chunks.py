"""Benchmark: what several vectors per long memory (chunks.py) buy on LongMemEval-S, in-process.

    .venv/bin/python bench/longmemeval_chunks.py --every 8             # 20 questions, ~10k turns
    .venv/bin/python bench/longmemeval_chunks.py --every 8 --variants off,title

The same questions and turns as bench/longmemeval.py (its data, selection and metrics), but each store
is filled in-process with `Store.write_many` (one commit, batched embeddings) instead of one MCP `write`
a turn, so every way of cutting long memories is compared on exactly the same texts in one run:

- off:     one vector a memory, the model reads its first 254 word pieces (somna before chunks);
- title:   a long memory also gets a vector for each later window, its title in front of each (the default);
- notitle: the same windows without the title.

Each variant gets a fresh store per question and is searched with `Store.search(question, limit=10)` in
mode "vectors" and "hybrid". Texts are embedded once for all variants (a memo in front of the model), so
the variants cost only their own windows. The cost of the windows on writes is measured apart: the
turns of the first question embedded with and without their windows (`Indexer.embed_notes`).

Writes bench/results/<out>.json and <out>.md (default `longmemeval_chunks`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import longmemeval as lme  # noqa: E402

from somna import chunks  # noqa: E402
from somna.embeddings import LazyEmbedder  # noqa: E402
from somna.store import Store  # noqa: E402

VARIANTS = {"off": None, "title": True, "notitle": False}
MODES = ("vectors", "hybrid")


class Memo:
    """The model with a memo in front: a text is embedded once however many variants embed it."""

    def __init__(self, inner: LazyEmbedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.window: int | None = inner.window
        self.memo: dict[str, list[float]] = {}
        self.embedded = 0
        self.seconds = 0.0

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def embed(self, texts: list[str]) -> list[list[float]]:
        need = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if need:
            t0 = time.perf_counter()
            self.memo.update(zip(need, self.inner.embed(need), strict=True))
            self.seconds += time.perf_counter() - t0
            self.embedded += len(need)
        return [self.memo[t] for t in texts]


def run_variant(
    memo: Memo, variant: str, q: dict[str, Any], turns: list[lme.Turn], tmp: Path
) -> dict[str, Any]:
    memo.window = None if VARIANTS[variant] is None else memo.inner.window
    chunks.TITLE = bool(VARIANTS[variant])
    store = Store.init(tmp / f"{q['question_id']}-{variant}", embedder=memo)
    try:
        ids = store.write_many([{"content": t.content} for t in turns], author="bench")
        store.backfill_vectors()  # nothing left to fill: write_many embeds and cuts on the way in
        turn_of = {i: k for k, i in enumerate(ids)}
        vectors = store.index.conn.execute("SELECT count(*) FROM vec_bits").fetchone()[0]
        answer_sessions = set(q["answer_session_ids"])
        out: dict[str, Any] = {"n_vectors": vectors, "memories": len(ids)}
        for mode in MODES:
            hits = store.search(q["question"], limit=lme.LIMIT, mode=mode)["hits"]
            ranked = [turn_of[h["id"]] for h in hits if h["id"] in turn_of]
            out[mode] = lme.score(ranked, turns, answer_sessions)
        return out
    finally:
        store.close()


def write_cost(inner: LazyEmbedder, turns: list[lme.Turn], tmp: Path) -> dict[str, Any]:
    """Seconds to embed one question's turns as the write path does, with and without their windows."""
    out: dict[str, Any] = {}
    store = Store.init(tmp / "cost", embedder=inner)
    from somna.notes import Note

    batch = [Note({"title": t.content.split("\n", 1)[0]}, t.content) for t in turns]
    window = inner.window
    long = [n for n in batch if len(chunks.windows(n.title, n.body, window)) > 1]
    for label, w in (("off_s", None), ("with_windows_s", window)):
        inner.window = w
        t0 = time.perf_counter()
        store.indexer.embed_notes(long)
        out[label] = round(time.perf_counter() - t0, 2)
    inner.window = window
    out["long_turns"] = len(long)
    out["windows"] = sum(len(chunks.windows(n.title, n.body, window)) - 1 for n in long)
    store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--questions", type=int, default=None)
    ap.add_argument("--ids", default="", help="comma-separated question ids (instead of --every)")
    ap.add_argument("--variants", default="off,title,notitle")
    ap.add_argument("--out", default="longmemeval_chunks")
    ap.add_argument("--no-cost", action="store_true", help="skip the write-cost measurement")
    args = ap.parse_args()
    variants = args.variants.split(",")
    if args.ids:
        wanted = args.ids.split(",")
        qs = [q for q in lme.load(lme.DATA) if q["question_id"] in wanted]
    else:
        qs = lme.select(
            lme.load(lme.DATA), n=args.questions, every=args.every, offset=args.offset, types=None
        )
    inner = LazyEmbedder("minilm")
    assert inner.wait(300), inner.error
    memo = Memo(inner)
    records: list[dict[str, Any]] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="lme-chunks-") as td:
        tmp = Path(td)
        cost = {} if args.no_cost else write_cost(inner, lme.turns_of(qs[0]), tmp)
        for n, q in enumerate(qs, 1):
            turns = lme.turns_of(q)
            rec: dict[str, Any] = {
                "id": q["question_id"],
                "type": q["question_type"],
                "abstention": q["question_id"].endswith("_abs"),
                "variants": {v: run_variant(memo, v, q, turns, tmp) for v in variants},
            }
            records.append(rec)
            mrr = " ".join(
                f"{v}:{rec['variants'][v]['vectors']['mrr@10']:.2f}/{rec['variants'][v]['hybrid']['mrr@10']:.2f}"
                for v in variants
            )
            print(
                f"[{n}/{len(qs)}] {q['question_id']} {q['question_type']}: vec/hybrid MRR {mrr}", flush=True
            )
    main_recs = [r for r in records if not r["abstention"]]

    def mean(rs: list[dict[str, Any]], v: str, mode: str, m: str) -> float:
        return round(statistics.fmean(r["variants"][v][mode][m] for r in rs), 3) if rs else float("nan")

    summary = {
        v: {mode: {m: mean(main_recs, v, mode, m) for m in lme.METRICS} for mode in MODES} for v in variants
    }
    by_type = {
        ty: {"n": len(rs)} | {v: {mode: mean(rs, v, mode, "mrr@10") for mode in MODES} for v in variants}
        for ty in lme.TYPES
        if (rs := [r for r in main_recs if r["type"] == ty])
    }
    vectors = {v: sum(r["variants"][v]["n_vectors"] for r in records) for v in variants}
    memories = sum(r["variants"][variants[0]]["memories"] for r in records)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": "bench/longmemeval_chunks.py " + " ".join(sys.argv[1:]),
        "questions": len(main_recs),
        "memories": memories,
        "vectors": vectors,
        "summary": summary,
        "by_type": by_type,
        "write_cost": cost,
        "chunks": {"size": chunks.SIZE, "overlap": chunks.OVERLAP, "max_vectors": chunks.MAX_VECTORS},
        "records": records,
    }
    lme.RESULTS.mkdir(exist_ok=True)
    (lme.RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1))
    md = render(result, variants)
    (lme.RESULTS / f"{args.out}.md").write_text(md)
    print(md)
    return 0


def render(r: dict[str, Any], variants: list[str]) -> str:
    lines = [
        "# LongMemEval-S (dev sample): several vectors per long memory, in-process",
        "",
        f"{r['date']} · {r['machine']} · `{r['command']}`",
        "",
        f"{r['questions']} questions (abstention ones left out), {r['memories']} turns written as memories "
        "with `Store.write_many`, searched with `Store.search(question, limit=10)`. "
        "off: one vector a memory (before); title / notitle: a vector for each later window of a long "
        "memory, with / without its title in front; a memory scores by its best vector.",
        "",
        "| variant | vectors | mode | session any@5 | turn any@10 | MRR@10 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        for mode in MODES:
            s = r["summary"][v][mode]
            lines.append(
                f"| {v} | {r['vectors'][v]} | {mode} | {s['session_any@5']:.3f} | {s['turn_any@10']:.3f} "
                f"| {s['mrr@10']:.3f} |"
            )
    lines += ["", "MRR@10 by question type (vectors / hybrid):", ""]
    lines += ["| type | n | " + " | ".join(variants) + " |", "| --- | --- |" + " --- |" * len(variants)]
    for ty, row in r["by_type"].items():
        cells = " | ".join(f"{row[v]['vectors']:.3f} / {row[v]['hybrid']:.3f}" for v in variants)
        lines.append(f"| {ty} | {row['n']} | {cells} |")
    c = r["write_cost"]
    if c:
        lines += [
            "",
            f"Embedding cost of the long turns of the first question ({c['long_turns']} turns over 254 word "
            f"pieces, {c['windows']} later windows): {c['off_s']} s with one vector each, "
            f"{c['with_windows_s']} s with their windows.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
