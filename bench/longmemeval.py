"""Benchmark: LongMemEval-S (dev sample) through a real MCP session, with BM25 and vector baselines.

    .venv/bin/python bench/longmemeval.py --every 4            # every 4th question of each type (~39)
    .venv/bin/python bench/longmemeval.py --questions 4        # a quick look
    .venv/bin/python bench/longmemeval.py --types temporal-reasoning,knowledge-update --every 2

Data: ../shared/data/longmemeval-s/dev.json.gz (149 questions; read its README). Each question has its
own haystack of ~50 sessions (~500 turns). For each question:

- a fresh store (`somna init` in a temp dir) and a real `somna serve` spawned over stdio by the MCP SDK
  client (the real MiniLM model, HF_HUB_OFFLINE=1); the bench waits until `search` answers in mode
  "hybrid" (the model is loaded) before writing, so every write is embedded on the way in;
- every non-empty turn is written with the `write` tool, force=true (turns repeat each other's words; the
  near-duplicate check must not refuse one). The content is `"<session date> · <role>"` on the first
  line (which becomes the memory's title) and the turn's text after it; the one tag is `lme-sNN`, the
  session's position in the haystack. The write answers with the memory's id, and the bench keeps
  id -> (session, turn) to map hits back. The session ids themselves are never written: many contain
  the word "answer", which would hand BM25 the gold;
- the question is searched with `search(query=question, limit=10)`, and once more with limit 50 for
  diagnostics only (the rank of the first answer turn beyond 10; not in any metric, not timed).

Baselines, computed in this process on the same texts (the memory's content exactly as written):
- BM25: SQLite FTS5 (`bm25()`, k1=1.2, b=0.75, one column, tokenize='porter unicode61') through the
  same driver somna uses (`somna.db.connect`, sqlean), the query built by somna's `fts_query` (the
  question's words, quoted, OR-ed);
- vectors: all-MiniLM-L6-v2 through somna's own embedder (`somna.embeddings.make_embedder("minilm")`),
  exact cosine over all turns;
- RRF: the two fused by reciprocal rank (k=60, top 80 of each: somna's constants for limit 10), to
  tell what the fusion itself does from what somna adds after it (boosts, newer-first).

Metrics, over the non-abstention questions (ids ending `_abs` are reported on their own: their answer
is not in the haystack, most have no has_answer turn): session recall_any@5 and @10 (any answer session
among the sessions of the top-k hits, in rank order), turn recall_any@10 (any has_answer turn in the top
10) and MRR@10 (1/rank of the first has_answer turn, 0 beyond 10); overall and by question_type.
Timings: writes/s and write latency p50/p95 through MCP, search (limit 10) p50/p95 through MCP.

Writes bench/results/<out>.json and <out>.md (default `longmemeval`), rewritten after every question,
so an interrupted run leaves the questions it finished.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import anyio  # noqa: E402
import numpy as np  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

from somna.db import connect  # noqa: E402
from somna.embeddings import make_embedder  # noqa: E402
from somna.index import fts_query  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = HERE.parent.parent / "shared" / "data" / "longmemeval-s" / "dev.json.gz"
LIMIT = 10
DIAG_LIMIT = 50
RRF_K = 60
RRF_POOL = 80  # somna's candidate pool for limit 10: max(50, 8 * limit)
SYSTEMS = ("somna", "bm25", "vector", "rrf")
SYSTEM_NAMES = {
    "somna": "somna, through MCP",
    "bm25": "BM25 alone (FTS5), same turns",
    "vector": "vectors alone (MiniLM cosine), same turns",
    "rrf": "RRF of the two above (k=60), same turns",
}
TYPES = (
    "single-session-user",
    "single-session-assistant",
    "single-session-preference",
    "multi-session",
    "knowledge-update",
    "temporal-reasoning",
)


# -- data ------------------------------------------------------------------------------------------------
@dataclass
class Turn:
    session: int  # position of the session in the haystack
    session_id: str
    date: str
    index: int  # position of the turn in its session
    role: str
    has_answer: bool
    content: str  # the memory's content, exactly as written


def load(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def select(
    questions: list[dict[str, Any]], *, n: int | None, every: int | None, offset: int, types: list[str] | None
) -> list[dict[str, Any]]:
    """Questions in id order. --every K: every K-th question of each type (from --offset), so every type
    appears; --questions N: the first N of what is left."""
    qs = [q for q in questions if not types or q["question_type"] in types]
    if every:
        by_type: dict[str, int] = defaultdict(int)
        keep = []
        for q in qs:
            i = by_type[q["question_type"]]
            by_type[q["question_type"]] += 1
            if i % every == offset % every:
                keep.append(q)
        qs = keep
    return qs[:n] if n else qs


def turns_of(q: dict[str, Any]) -> list[Turn]:
    out = []
    for s, (sid, date, session) in enumerate(
        zip(q["haystack_session_ids"], q["haystack_dates"], q["haystack_sessions"], strict=True)
    ):
        for i, t in enumerate(session):
            text = t["content"].strip()
            if not text:  # the write tool refuses empty content; three turns of the 149 haystacks
                continue
            out.append(
                Turn(s, sid, date, i, t["role"], bool(t.get("has_answer")), f"{date} · {t['role']}\n{text}\n")
            )
    return out


# -- metrics ---------------------------------------------------------------------------------------------
def score(ranked: list[int], turns: list[Turn], answer_sessions: set[str]) -> dict[str, Any]:
    """ranked: turn indices, best first (at least the top LIMIT)."""
    top = ranked[:LIMIT]
    first = next((r for r, t in enumerate(top, 1) if turns[t].has_answer), None)

    def sess_any(k: int) -> float:
        return float(any(turns[t].session_id in answer_sessions for t in ranked[:k]))

    return {
        "session_any@5": sess_any(5),
        "session_any@10": sess_any(10),
        "turn_any@10": float(first is not None),
        "mrr@10": 1.0 / first if first else 0.0,
        "first_answer_rank": next((r for r, t in enumerate(ranked, 1) if turns[t].has_answer), None),
        "first_session_rank": next(
            (r for r, t in enumerate(ranked, 1) if turns[t].session_id in answer_sessions), None
        ),
    }


METRICS = ("session_any@5", "session_any@10", "turn_any@10", "mrr@10")


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(rs: list[dict[str, Any]], system: str, m: str) -> float:
        return round(statistics.fmean(r["systems"][system][m] for r in rs), 3) if rs else float("nan")

    main = [r for r in records if not r["abstention"]]
    abst = [r for r in records if r["abstention"]]
    out: dict[str, Any] = {
        "n": len(main),
        "overall": {s: {m: mean(main, s, m) for m in METRICS} for s in SYSTEMS},
        "by_type": {},
        "abstention": {
            "n": len(abst),
            "note": "answer not in the haystack; session metrics use its answer_session_ids (related "
            "sessions), turn metrics its has_answer turns, which most abstention haystacks lack",
            "systems": {s: {m: mean(abst, s, m) for m in METRICS} for s in SYSTEMS},
        },
    }
    for ty in TYPES:
        rs = [r for r in main if r["type"] == ty]
        if rs:
            out["by_type"][ty] = {"n": len(rs)} | {s: {m: mean(rs, s, m) for m in METRICS} for s in SYSTEMS}
    return out


def pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {
        "n": len(s),
        "p50_ms": round(statistics.median(s) * 1000, 1),
        "p95_ms": round(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))] * 1000, 1),
        "max_ms": round(s[-1] * 1000, 1),
    }


# -- baselines -------------------------------------------------------------------------------------------
def bm25_ranking(turns: list[Turn], question: str) -> list[int]:
    conn = connect(":memory:", vec=False)
    try:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize='porter unicode61')")
        conn.executemany(
            "INSERT INTO t (rowid, text) VALUES (?, ?)", [(i, t.content) for i, t in enumerate(turns)]
        )
        match = fts_query(question)
        if not match:
            return []
        return [r for (r,) in conn.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t)", (match,))]
    finally:
        conn.close()


def vector_ranking(emb: Any, vecs: np.ndarray, question: str) -> list[int]:
    qv = np.asarray(emb.embed([question])[0], dtype=np.float32)
    sims = vecs @ (qv / (np.linalg.norm(qv) or 1.0))
    return [int(i) for i in np.argsort(-sims, kind="stable")]


def rrf(*rankings: list[int]) -> list[int]:
    fused: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, t in enumerate(ranking[:RRF_POOL]):
            fused[t] += 1.0 / (RRF_K + rank + 1)
    return sorted(fused, key=lambda t: (-fused[t], t))


def embed_all(emb: Any, texts: list[str]) -> np.ndarray:
    vecs = np.asarray(emb.embed(texts), dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.where(norms == 0, 1.0, norms)


EMBEDDER = ["minilm"]  # --embedder: SOMNA_EMBEDDER for the server and the vector baseline


# -- somna through MCP -----------------------------------------------------------------------------------
def server_params(store: Path, home: Path) -> StdioServerParameters:
    env = {
        **os.environ,
        "SOMNA_EMBEDDER": EMBEDDER[0],
        "SOMNA_ATTACH": "0",
        "SOMNA_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("SOMNA_STORE", None)
    return StdioServerParameters(
        command=sys.executable, args=["-m", "somna", "--store", str(store), "serve"], env=env
    )


def _structured(res: Any) -> dict[str, Any]:
    if res.is_error:
        raise RuntimeError(f"tool error: {res.content}")
    if res.structured_content is not None:
        return res.structured_content
    return json.loads(res.content[0].text)


async def somna_session(
    store: Path, home: Path, turns: list[Turn], question: str, *, timeout: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        try:
            async with (
                stdio_client(server_params(store, home), errlog=err) as (read, write),
                ClientSession(read, write) as s,
            ):
                await s.initialize()
                out["handshake_s"] = round(time.perf_counter() - t0, 2)
                tools = {t.name: t for t in (await s.list_tools()).tools}
                out["write_schema_keys"] = sorted(tools["write"].input_schema.get("properties", {}))
                # the model loads on a background thread; until then search answers in mode "words"
                start = time.monotonic()
                while True:
                    res = _structured(await s.call_tool("search", {"query": "warm up the model", "limit": 1}))
                    if res.get("mode") == "hybrid":
                        break
                    if time.monotonic() - start > timeout:
                        raise TimeoutError(f"search never ran in hybrid mode: {res}")
                    await anyio.sleep(0.25)
                out["model_ready_s"] = round(time.monotonic() - start, 2)
                ids: dict[str, int] = {}
                lat: list[float] = []
                t_all = time.perf_counter()
                for i, turn in enumerate(turns):
                    args = {
                        "content": turn.content,
                        "type": "note",
                        "tags": [f"lme-s{turn.session:02d}"],
                        "force": True,
                    }
                    t = time.perf_counter()
                    res = await s.call_tool("write", args)
                    lat.append(time.perf_counter() - t)
                    ids[_structured(res)["id"]] = i
                out["write_total_s"] = time.perf_counter() - t_all
                out["write_latencies"] = lat
                t = time.perf_counter()
                res = _structured(await s.call_tool("search", {"query": question, "limit": LIMIT}))
                out["search_s"] = time.perf_counter() - t
                out["search_mode"] = res.get("mode")
                out["ranked"] = [ids[h["id"]] for h in res["hits"] if h["id"] in ids]
                out["matched"] = [h.get("matched") for h in res["hits"]]
                res50 = _structured(await s.call_tool("search", {"query": question, "limit": DIAG_LIMIT}))
                out["ranked50"] = [ids[h["id"]] for h in res50["hits"] if h["id"] in ids]
        except BaseException:
            err.seek(0)
            sys.stderr.write(err.read()[-4000:])
            raise
    return out


# -- one question ----------------------------------------------------------------------------------------
def run_question(q: dict[str, Any], emb: Any, *, timeout: float, keep: Path | None) -> dict[str, Any]:
    turns = turns_of(q)
    gold = set(q["answer_session_ids"])
    question = q["question"]
    t = time.perf_counter()
    vecs = embed_all(emb, [t_.content for t_ in turns])
    embed_s = time.perf_counter() - t
    rank_bm25 = bm25_ranking(turns, question)
    rank_vec = vector_ranking(emb, vecs, question)
    rank_rrf = rrf(rank_bm25, rank_vec)

    tmp = Path(tempfile.mkdtemp(prefix="somna-lme-"))
    try:
        store = tmp / "store"
        subprocess.run(
            [sys.executable, "-m", "somna", "init", str(store)],
            check=True,
            capture_output=True,
            env={**os.environ, "SOMNA_HOME": str(tmp / "home")},
        )
        mcp = anyio.run(lambda: somna_session(store, tmp / "home", turns, question, timeout=timeout))
        if keep is not None:
            shutil.copytree(store, keep / q["question_id"], dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    systems = {
        "somna": score(mcp["ranked"], turns, gold),
        "bm25": score(rank_bm25, turns, gold),
        "vector": score(rank_vec, turns, gold),
        "rrf": score(rank_rrf, turns, gold),
    }
    # somna's rank of the first answer turn within the top 50 (diagnostics only)
    systems["somna"]["first_answer_rank_in_50"] = next(
        (r for r, i in enumerate(mcp["ranked50"], 1) if turns[i].has_answer), None
    )
    lat = mcp["write_latencies"]
    return {
        "question_id": q["question_id"],
        "type": q["question_type"],
        "abstention": q["question_id"].endswith("_abs"),
        "question": question,
        "question_date": q["question_date"],
        "answer": str(q["answer"]),
        "turns": len(turns),
        "answer_turns": sum(t_.has_answer for t_ in turns),
        "sessions": len(q["haystack_session_ids"]),
        "systems": systems,
        "somna_mode": mcp["search_mode"],
        "somna_matched": mcp["matched"],
        "top_somna": [_brief(turns[i]) for i in mcp["ranked"][:3]],
        "top_bm25": [_brief(turns[i]) for i in rank_bm25[:3]],
        "timing": {
            "handshake_s": mcp["handshake_s"],
            "model_ready_s": mcp["model_ready_s"],
            "writes": len(lat),
            "write_total_s": round(mcp["write_total_s"], 2),
            "writes_per_s": round(len(lat) / mcp["write_total_s"], 1),
            "write_p50_ms": round(statistics.median(lat) * 1000, 1),
            "search_ms": round(mcp["search_s"] * 1000, 1),
            "baseline_embed_s": round(embed_s, 2),
        },
        "_write_latencies": [round(x, 5) for x in lat],
    }


def _brief(t: Turn) -> dict[str, Any]:
    text = re.sub(r"\s+", " ", t.content.split("\n", 1)[1]).strip()
    return {
        "session": t.session,
        "turn": t.index,
        "role": t.role,
        "has_answer": t.has_answer,
        "text": text[:160] + ("…" if len(text) > 160 else ""),
    }


# -- report ----------------------------------------------------------------------------------------------
def summary(records: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    lat = [x for r in records for x in r["_write_latencies"]]
    write_total = sum(r["timing"]["write_total_s"] for r in records)
    timings = {
        "writes": {"n": len(lat), "per_s": round(len(lat) / write_total, 1) if write_total else None}
        | pct(lat),
        "search_limit_10": pct([r["timing"]["search_ms"] / 1000 for r in records]),
        "model_ready_s_median": round(statistics.median(r["timing"]["model_ready_s"] for r in records), 2)
        if records
        else None,
        "baseline_embed_texts_per_s": round(
            sum(r["turns"] for r in records) / sum(r["timing"]["baseline_embed_s"] for r in records), 1
        )
        if records
        else None,
    }
    return {"meta": meta, "results": aggregate(records), "timings": timings, "questions": records}


def losses(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Questions where BM25 alone ranks the first answer turn above somna (best MRR gap first)."""
    out = []
    for r in records:
        if r["abstention"]:
            continue
        s, b = r["systems"]["somna"], r["systems"]["bm25"]
        if b["mrr@10"] > s["mrr@10"]:
            out.append(r)
    out.sort(key=lambda r: -(r["systems"]["bm25"]["mrr@10"] - r["systems"]["somna"]["mrr@10"]))
    return out


def _f(x: float) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _rank(x: int | None, cap: int | None = None) -> str:
    if x is None:
        return f">{cap}" if cap else "–"
    return str(x)


def markdown(rep: dict[str, Any]) -> str:
    res, tim, meta = rep["results"], rep["timings"], rep["meta"]
    lines = [
        "# LongMemEval-S (dev sample) through MCP",
        "",
        f"{meta['date']} · {meta['machine']} · `{meta['command']}`",
        "",
        f"{res['n']} questions ({meta['selection']}; abstention questions on their own below), each its own"
        f" fresh store of ~{meta['mean_turns']:.0f} turns written through `write` over stdio, then"
        f" `search(question, limit={LIMIT})`. Baselines on the same texts in the same run.",
        "",
        "| system | session any@5 | session any@10 | turn any@10 | MRR@10 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SYSTEMS:
        o = res["overall"][s]
        lines.append(
            f"| {SYSTEM_NAMES[s]} | {_f(o['session_any@5'])} | {_f(o['session_any@10'])} | "
            f"{_f(o['turn_any@10'])} | {_f(o['mrr@10'])} |"
        )
    lines += [
        "",
        "MRR@10 by question type:",
        "",
        "| type | n | somna | BM25 | vectors | RRF |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for ty, v in res["by_type"].items():
        lines.append(f"| {ty} | {v['n']} | " + " | ".join(_f(v[s]["mrr@10"]) for s in SYSTEMS) + " |")
    lines += [
        "",
        "Turn any@10 / session any@5 by question type (somna · BM25 · vectors):",
        "",
        "| type | turn any@10 | session any@5 |",
        "| --- | --- | --- |",
    ]
    for ty, v in res["by_type"].items():
        lines.append(
            f"| {ty} | "
            + " · ".join(_f(v[s]["turn_any@10"]) for s in ("somna", "bm25", "vector"))
            + " | "
            + " · ".join(_f(v[s]["session_any@5"]) for s in ("somna", "bm25", "vector"))
            + " |"
        )
    ab = res["abstention"]
    if ab["n"]:
        lines += [
            "",
            f"Abstention questions ({ab['n']}; not in the tables above; {ab['note']}): session any@5 "
            + ", ".join(f"{s} {_f(ab['systems'][s]['session_any@5'])}" for s in SYSTEMS)
            + ".",
        ]
    w, sr = tim["writes"], tim["search_limit_10"]
    if w.get("n"):
        lines += [
            "",
            "Timings through MCP (stdio, real MiniLM; the machine is shared: load averages in the JSON):",
            "",
            f"- writes: {w['n']} at {w['per_s']}/s, p50 {w['p50_ms']} ms, p95 {w['p95_ms']} ms,"
            f" max {w['max_ms']} ms",
            f"- search (limit {LIMIT}, ~{meta['mean_turns']:.0f} memories): p50 {sr['p50_ms']} ms,"
            f" p95 {sr['p95_ms']} ms ({sr['n']} searches, one a question)",
            f"- model ready after the handshake: median {tim['model_ready_s_median']} s;"
            f" baseline embedding in-process: {tim['baseline_embed_texts_per_s']} texts/s",
        ]
    lost = losses(rep["questions"])
    if lost:
        lines += [
            "",
            "Where BM25 alone ranks the first answer turn above somna (rank of the first has_answer turn;"
            " somna's beyond 10 from a second search with limit 50):",
            "",
            "| question | type | somna | BM25 | vectors | RRF |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in lost[:15]:
            sy = r["systems"]
            q = r["question"].replace("|", "\\|")
            ranks = (
                _rank(sy["somna"]["first_answer_rank_in_50"], DIAG_LIMIT),
                _rank(sy["bm25"]["first_answer_rank"]),
                _rank(sy["vector"]["first_answer_rank"]),
                _rank(sy["rrf"]["first_answer_rank"], RRF_POOL * 2),
            )
            lines.append(f"| {r['question_id']}: {q} | {r['type']} | " + " | ".join(ranks) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(rep: dict[str, Any], out: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{out}.json").write_text(
        json.dumps(rep, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (RESULTS / f"{out}.md").write_text(markdown(rep), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--questions", type=int, default=None, help="at most N questions (after the other filters)"
    )
    ap.add_argument("--every", type=int, default=None, help="every K-th question of each type")
    ap.add_argument("--offset", type=int, default=0, help="with --every: start at this position in each type")
    ap.add_argument("--types", default="", help="comma-separated question types")
    ap.add_argument("--ids", default="", help="comma-separated question ids (overrides the other filters)")
    ap.add_argument(
        "--embedder",
        default="minilm",
        help="SOMNA_EMBEDDER (minilm-torch: the float weights, the torch extra)",
    )
    ap.add_argument("--out", default="longmemeval", help="bench/results/<out>.json and .md")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the model")
    ap.add_argument("--keep-stores", type=Path, default=None, help="copy each question's store here")
    ap.add_argument("--render", action="store_true", help="re-render <out>.md from <out>.json and exit")
    args = ap.parse_args(argv)

    if args.render:
        rep = json.loads((RESULTS / f"{args.out}.json").read_text(encoding="utf-8"))
        write_outputs(rep, args.out)
        print(markdown(rep))
        return 0

    questions = load(args.data)
    if args.ids:
        want = args.ids.split(",")
        qs = [q for q in questions if q["question_id"] in want]
    else:
        types = [t for t in args.types.split(",") if t] or None
        bad = set(types or ()) - set(TYPES)
        if bad:
            ap.error(f"unknown types {sorted(bad)}; known: {', '.join(TYPES)}")
        qs = select(questions, n=args.questions, every=args.every, offset=args.offset, types=types)
    if not qs:
        ap.error("no question selected")
    selection = (
        f"ids {args.ids}"
        if args.ids
        else ", ".join(
            x
            for x in (
                f"every {args.every}th of each type from {args.offset}" if args.every else "",
                f"types {args.types}" if args.types else "",
                f"first {args.questions}" if args.questions else "",
            )
            if x
        )
        or "all"
    )
    EMBEDDER[0] = args.embedder
    emb = make_embedder(args.embedder)
    if not emb.wait(args.timeout):
        print(f"the embedding model did not load: {getattr(emb, 'error', '')}", file=sys.stderr)
        return 2
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "command": "bench/longmemeval.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "selection": selection,
        "data": str(args.data),
        "selected": [q["question_id"] for q in qs],
        "embedder": f"{emb.name} on {getattr(emb, 'backend', '')}: {getattr(emb, 'source', '')}",
        "load_before": os.getloadavg(),
        "memory_content": "'<session date> · <role>' first line (the title), the turn's text; tag lme-sNN",
        "bm25": "SQLite FTS5 bm25() via somna.db.connect (sqlean), porter unicode61, query = somna fts_query",
        "mean_turns": 0.0,
    }
    print(f"{len(qs)} questions ({selection})", file=sys.stderr)
    records: list[dict[str, Any]] = []
    t_run = time.monotonic()
    for n, q in enumerate(qs, 1):
        t = time.monotonic()
        rec = run_question(q, emb, timeout=args.timeout, keep=args.keep_stores)
        records.append(rec)
        sy = rec["systems"]
        print(
            f"[{n}/{len(qs)}] {q['question_id']} {q['question_type']}: {rec['turns']} turns, "
            f"{rec['timing']['writes_per_s']} writes/s; first answer rank somna "
            f"{_rank(sy['somna']['first_answer_rank_in_50'], DIAG_LIMIT)}"
            f" bm25 {_rank(sy['bm25']['first_answer_rank'])} vec {_rank(sy['vector']['first_answer_rank'])}"
            f" ({time.monotonic() - t:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        meta["mean_turns"] = statistics.fmean(r["turns"] for r in records)
        meta["load_after"] = os.getloadavg()
        meta["elapsed_s"] = round(time.monotonic() - t_run, 1)
        meta["completed"] = len(records)
        write_outputs(summary(records, meta), args.out)
    rep = summary(records, meta)
    write_outputs(rep, args.out)
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
