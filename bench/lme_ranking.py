"""LongMemEval-S dev sample in-process: compare ranking variants of somna's search quickly.

    .venv/bin/python bench/lme_ranking.py build --half even      # embed and write each question's store once
    .venv/bin/python bench/lme_ranking.py eval --half even        # every variant, the tuning half
    .venv/bin/python bench/lme_ranking.py eval --half odd --variants somna,final
    .venv/bin/python bench/lme_ranking.py eval --half held-out    # the MCP bench's held-out questions
    .venv/bin/python bench/lme_ranking.py letta --variants somna,RRF   # letta-facts, hybrid, R@1/R@5/MRR
    .venv/bin/python bench/lme_ranking.py words --half even       # the words side alone, no store needed

Not a replacement for `bench/longmemeval.py` (a real MCP session per question, the number to publish):
this is the loop for choosing settings. Each question's turns are written once (`Store.write_many`, the
same content, tag and type as the MCP bench) into a store under --work (default /tmp/lme_rank), with one
`created` second per turn in haystack order: memories written over time, as a real store has them. The
MiniLM vectors of the turns and of the question are cached beside the store (vectors.npz), so later runs
open the store with an embedder that answers from that cache and never runs the model.

Halves: questions at even positions within their type (0, 2, 4, ...) are the tuning half; odd positions
are held out and reported on their own. Variants are switched through `somna.search`'s settings
(`RANKING`), the same code the server runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import longmemeval as L  # noqa: E402

from somna import search as S  # noqa: E402
from somna.embeddings import make_embedder  # noqa: E402
from somna.store import Store  # noqa: E402

WORK = Path("/tmp/lme_rank")


def key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class CachedEmbedder:
    """The real model's name and size; vectors from a cache, the model asked (and the cache filled) only
    for a text it lacks."""

    def __init__(self, real: Any, cache: dict[str, np.ndarray], name: str = "all-MiniLM-L6-v2") -> None:
        self.real = real
        self.cache = cache
        self.name = real.name if real is not None else name
        self.dim = 384
        self.missed = 0

    @property
    def ready(self) -> bool:
        return True

    def embed(self, texts: list[str]) -> list[list[float]]:
        need = [t for t in dict.fromkeys(texts) if key(t) not in self.cache]
        if need:
            if self.real is None:
                raise RuntimeError(f"{len(need)} texts not in the vector cache")
            self.missed += len(need)
            for t, v in zip(need, self.real.embed(need), strict=True):
                self.cache[key(t)] = np.asarray(v, dtype=np.float32)
        return [self.cache[key(t)].tolist() for t in texts]


def load_cache(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    z = np.load(path)
    return {str(k): v for k, v in zip(z["keys"], z["vecs"], strict=True)}


def save_cache(path: Path, cache: dict[str, np.ndarray]) -> None:
    keys = sorted(cache)
    np.savez(path, keys=np.array(keys), vecs=np.stack([cache[k] for k in keys]))


def halves(questions: list[dict[str, Any]], half: str) -> list[dict[str, Any]]:
    if half == "all":
        return questions
    if half == "held-out":  # the MCP bench's held-out run (--every 4 --offset 1), a quarter of the odd half
        return L.select(questions, n=None, every=4, offset=1, types=None)
    return L.select(questions, n=None, every=2, offset=0 if half == "even" else 1, types=None)


def build(q: dict[str, Any], real: Any, work: Path) -> None:
    d = work / q["question_id"]
    if (d / "done").exists():
        return
    turns = L.turns_of(q)
    cache = load_cache(d / "vectors.npz")
    emb = CachedEmbedder(real, cache)
    emb.embed([q["question"]])
    if (d / "store").exists():
        import shutil

        shutil.rmtree(d / "store")
    d.mkdir(parents=True, exist_ok=True)
    st = Store.init(d / "store", embedder=emb)
    ids = st.write_many(
        [{"content": t.content, "type": "note", "tags": [f"lme-s{t.session:02d}"]} for t in turns],
        author="bench",
    )
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with st.index.conn:
        for k, i in enumerate(ids):
            stamp = (base + dt.timedelta(seconds=k)).isoformat().replace("+00:00", "Z")
            st.index.conn.execute("UPDATE notes SET created=?, updated=? WHERE id=?", (stamp, stamp, i))
    st.close()
    save_cache(d / "vectors.npz", cache)
    (d / "ids.json").write_text(json.dumps(ids))
    (d / "done").write_text("")


# Variants: settings of somna.search.RANKING (dataclasses.replace on the defaults). Each names all the
# fusion settings it needs, so that the names keep their meaning when the defaults change.
RRF = {"fusion": "rrf", "words_weight": 0.5, "k": 0}
SC = {"fusion": "scores", "floor": "zero", "scale": "range"}
NP = {"pairs": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "somna": {},  # as in src
    "newer-first off": {"newer_first": "off"},
    "newer-first any length": {"claim_words": 0},
    "question words dropped": {"stopwords": True},
    "word pairs not queried": {"pairs": False},
    "RRF": RRF | NP,  # the fusion before this change (newer-first by places, as now)
    "RRF + word pairs": RRF,
    "RRF k=20": RRF | {"k": 20},
    "RRF words 0.6": RRF | {"words_weight": 0.6},
    **{f"scores words {w}": SC | {"words_weight": w} for w in (0.4, 0.5, 0.6, 0.7, 0.8)},
    **{f"scores words {w} no pairs": SC | NP | {"words_weight": w} for w in (0.4, 0.5, 0.6)},
    **{f"min-max {w}": SC | {"floor": "pool", "words_weight": w} for w in (0.5, 0.6, 0.7)},
    **{f"z {w}": SC | {"floor": "pool", "scale": "std", "words_weight": w} for w in (0.5, 0.6, 0.7)},
}


def evaluate(qs: list[dict[str, Any]], work: Path, names: list[str]) -> dict[str, Any]:
    out: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {n: {} for n in names + ["bm25"]}
    base = getattr(S, "RANKING", None)  # None: a revision from before the settings (only "somna")
    per: dict[str, list[Any]] = defaultdict(list)
    for q in qs:
        d = work / q["question_id"]
        if not (d / "done").exists():
            continue
        turns = L.turns_of(q)
        ids = json.loads((d / "ids.json").read_text())
        pos = {i: k for k, i in enumerate(ids)}
        gold = set(q["answer_session_ids"])
        emb = CachedEmbedder(None, load_cache(d / "vectors.npz"))
        st = Store(d / "store", embedder=emb)
        try:
            for n in names:
                if base is not None:
                    S.RANKING = dataclasses.replace(base, **VARIANTS.get(n, {}))
                hits = st.search(q["question"], limit=10)["hits"]
                ranked = [pos[h["id"]] for h in hits]
                sc = L.score(ranked, turns, gold)
                out[n].setdefault(q["question_type"], []).append((q["question_id"], sc))
                per[q["question_id"]].append(sc["first_answer_rank"])
        finally:
            if base is not None:
                S.RANKING = base
            st.close()
        sc = L.score(L.bm25_ranking(turns, q["question"]), turns, gold)
        out["bm25"].setdefault(q["question_type"], []).append((q["question_id"], sc))
    return {"systems": out, "ranks": per}


def letta(work: Path, names: list[str]) -> dict[str, Any]:
    """letta-facts (2,000 facts in one store, 1,100 questions; as bench/letta_retrieval.py, hybrid mode):
    the store is built once under work/letta with cached vectors; recall@1/5 and MRR@10 per variant."""
    import letta_retrieval as LR

    rows = LR.load_rows(LR.DATA)
    qs = LR.questions(rows)
    facts = list(dict.fromkeys(f for row in rows for f in row["facts"]))
    d = work / "letta"
    cache = load_cache(d / "vectors.npz")
    if not (d / "done").exists():
        real = make_embedder("minilm")
        real.wait(300)
        emb = CachedEmbedder(real, cache)
        st = Store.init(d / "store", embedder=emb)
        ids = st.write_many([{"content": f} for f in facts], author="bench")
        emb.embed([q["question"] for q in qs])
        st.close()
        save_cache(d / "vectors.npz", cache)
        (d / "ids.json").write_text(json.dumps(ids))
        (d / "done").write_text("")
    by_fact = dict(zip(facts, json.loads((d / "ids.json").read_text()), strict=True))
    st = Store(d / "store", embedder=CachedEmbedder(None, cache))
    base = S.RANKING
    out: dict[str, Any] = {}
    try:
        for n in names:
            S.RANKING = dataclasses.replace(base, **VARIANTS.get(n, {}))
            ranks = []
            for q in qs:
                want = {by_fact[f] for f in q["support"]}
                hits = st.search(q["question"], limit=10)["hits"]
                ranks.append(next((i for i, h in enumerate(hits, 1) if h["id"] in want), None))
            out[n] = {
                "recall@1": sum(r == 1 for r in ranks) / len(ranks),
                "recall@5": sum(1 for r in ranks if r and r <= 5) / len(ranks),
                "mrr@10": sum(1 / r for r in ranks if r) / len(ranks),
            }
            print(f"{n:26s} " + " ".join(f"{k} {v:.3f}" for k, v in out[n].items()), flush=True)
    finally:
        S.RANKING = base
        st.close()
    return out


def words_side(qs: list[dict[str, Any]]) -> str:
    """The words side alone, with and without the query's word pairs, on any half and no store: somna's FTS5
    table rebuilt in memory (title, body, tags; porter; bm25 weights 3, 1, 2), the first 80 rows."""
    from somna.db import connect
    from somna.fusion import word_pairs
    from somna.index import fts_query

    by: dict[str, dict[str, list[dict[str, Any]]]] = {"words": {}, "words + pairs": {}}
    for q in qs:
        if q["question_id"].endswith("_abs"):
            continue
        turns = L.turns_of(q)
        conn = connect(":memory:", vec=False)
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(title, body, tags, tokenize='porter unicode61')")
        conn.executemany(
            "INSERT INTO t (rowid, title, body, tags) VALUES (?, ?, ?, ?)",
            [
                (i, t.content.split("\n", 1)[0], t.content, f"lme-s{t.session:02d}")
                for i, t in enumerate(turns)
            ],
        )
        for name, pairs in (("words", []), ("words + pairs", word_pairs(q["question"]))):
            match = " OR ".join([fts_query(q["question"])] + [f'"{p}"' for p in pairs])
            sql = "SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t, 3.0, 1.0, 2.0) LIMIT 80"
            ranked = [r for (r,) in conn.execute(sql, (match,))]
            sc = L.score(ranked, turns, set(q["answer_session_ids"]))
            by[name].setdefault(q["question_type"], []).append(sc)
        conn.close()
    lines = []
    for name, types in by.items():
        rs = [sc for v in types.values() for sc in v]
        lines.append(
            f"{name:14s} n={len(rs)} s@5 {statistics.fmean(r['session_any@5'] for r in rs):.3f} "
            f"t@10 {statistics.fmean(r['turn_any@10'] for r in rs):.3f} "
            f"MRR {statistics.fmean(r['mrr@10'] for r in rs):.3f}"
        )
    return "\n".join(lines)


def show(q: dict[str, Any], work: Path, names: list[str]) -> None:
    """The top 10 of each variant for one question: turn, answer or not, and the start of its text."""
    d = work / q["question_id"]
    turns = L.turns_of(q)
    ids = json.loads((d / "ids.json").read_text())
    pos = {i: k for k, i in enumerate(ids)}
    st = Store(d / "store", embedder=CachedEmbedder(None, load_cache(d / "vectors.npz")))
    base = S.RANKING
    print(q["question_id"], q["question_type"], q["question"], "->", q["answer"])
    try:
        for n in names:
            S.RANKING = dataclasses.replace(base, **VARIANTS.get(n, {}))
            print(" ", n)
            for h in st.search(q["question"], limit=10)["hits"]:
                t = turns[pos[h["id"]]]
                text = t.content.split("\n", 1)[1].replace("\n", " ")[:90]
                mark = "*" if t.has_answer else " "
                print(
                    f"   {mark} s{t.session:02d} t{t.index:02d} {h['score']:.2f} {h['matched'][:5]:5s} {text}"
                )
    finally:
        S.RANKING = base
        st.close()
    print(
        "  bm25:",
        [("*" if turns[i].has_answer else "") + str(i) for i in L.bm25_ranking(turns, q["question"])[:10]],
    )


def table(res: dict[str, Any]) -> str:
    lines = []
    types = list(L.TYPES)
    head = f"{'variant':22s} {'n':>3s} {'s@5':>6s} {'t@10':>6s} {'MRR':>6s}  " + " ".join(
        f"{t[:10]:>10s}" for t in types
    )
    lines.append(head)
    for n, by in res["systems"].items():
        allr = [sc for rs in by.values() for qid, sc in rs if not qid.endswith("_abs")]  # as the MCP bench
        if not allr:
            continue

        def m(rs: list[dict[str, Any]], k: str) -> float:
            return statistics.fmean(r[k] for r in rs) if rs else float("nan")

        cols = []
        for t in types:
            rs = [sc for qid, sc in by.get(t, []) if not qid.endswith("_abs")]
            cols.append(f"{m(rs, 'mrr@10'):10.3f}")
        lines.append(
            f"{n:22s} {len(allr):3d} {m(allr, 'session_any@5'):6.3f} {m(allr, 'turn_any@10'):6.3f} "
            f"{m(allr, 'mrr@10'):6.3f}  " + " ".join(cols)
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("build", "eval", "show", "letta", "words"))
    ap.add_argument("--ids", default="", help="show: these question ids")
    ap.add_argument("--half", default="even", choices=("even", "odd", "held-out", "all"))
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--variants", default="")
    ap.add_argument("--out", default="", help="write the table and per-question ranks to this JSON")
    args = ap.parse_args()
    qs = halves(L.load(L.DATA), args.half)
    if args.cmd == "build":
        real = make_embedder("minilm")
        real.wait(300)
        t0 = time.monotonic()
        for k, q in enumerate(qs, 1):
            t = time.monotonic()
            build(q, real, args.work)
            print(f"[{k}/{len(qs)}] {q['question_id']} {time.monotonic() - t:.0f} s", flush=True)
        print(f"built in {time.monotonic() - t0:.0f} s")
        return 0
    names = [n for n in args.variants.split(",") if n] or list(VARIANTS)
    if args.cmd == "words":
        print(words_side(qs))
        return 0
    if args.cmd == "letta":
        res = letta(args.work, names)
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1))
        return 0
    if args.cmd == "show":
        for q in L.load(L.DATA):
            if q["question_id"] in args.ids.split(","):
                show(q, args.work, names)
        return 0
    t0 = time.monotonic()
    res = evaluate(qs, args.work, names)
    print(table(res))
    print(f"{time.monotonic() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
