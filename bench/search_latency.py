"""Benchmark: warm search latency at 1k, 10k and 100k memories, in-process and through the MCP client.

    .venv/bin/python bench/search_latency.py [--sizes 1000,10000,100000] [--queries 60]

Stores (bench/synth.py memories) are built once under bench/results/tmp/stores/<n> and reused by later
runs (`--rebuild` to start afresh). The 1k store is embedded with the real model (its build is the bulk
import row); larger stores take their vectors from `synth.PoolEmbedder` (pool sentences embedded for
real, a memory's vector the normalised sum of its two sentences). Every measured query is a distinct
question embedded for real: the query-embedding cache never answers.

In-process: `Store.search(q)` (hybrid, default limit 8) on a warm store with the real `LazyEmbedder`.
Through MCP: a `somna serve` process (SOMNA_EMBEDDER=minilm, SOMNA_ATTACH=0) driven by the SDK's stdio
client; warm-up calls until the model is loaded and the answer's mode is hybrid, then the timed calls
(`call_tool("search")` round trip). p50, p95 and the p95/p50 ratio per size, plus a breakdown (query
embedding, words, vectors, the rest) from the in-process runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import anyio  # noqa: E402
import synth  # noqa: E402
from handshake import percentile  # noqa: E402
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402

from somna.embeddings import LazyEmbedder  # noqa: E402
from somna.schema import INDEX_MIGRATIONS  # noqa: E402
from somna.store import Store  # noqa: E402

STORES = HERE / "results" / "tmp" / "stores"
CHUNK = 5000  # memories per write_many (one git commit each; git's argument list stays small)


def stats(lat_s: list[float]) -> dict[str, float]:
    p50 = statistics.median(lat_s) * 1000
    p95 = percentile(lat_s, 95) * 1000
    return {
        "n": len(lat_s),
        "p50_ms": round(p50, 2),
        "p95_ms": round(p95, 2),
        "p95_over_p50": round(p95 / p50, 2),
        "mean_ms": round(statistics.fmean(lat_s) * 1000, 2),
    }


def model() -> LazyEmbedder:
    emb = LazyEmbedder()
    if not emb.wait():
        raise RuntimeError(f"the embedding model did not load: {emb.error}")
    return emb


def build(n: int, emb: LazyEmbedder, *, rebuild: bool = False) -> tuple[Path, dict[str, Any]]:
    """The store of n synthetic memories (cached across runs), and how it was built."""
    root = STORES / str(n)
    info_path = root.parent / f"{n}.json"
    if root.exists() and info_path.exists() and not rebuild:
        info = json.loads(info_path.read_text())
        # a store from an older index format would be migrated (and re-embedded) while it is measured
        if info.get("index_format") == len(INDEX_MIGRATIONS):
            return root, info | {"reused": True}
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    corp = synth.corpus(n)
    t0 = time.perf_counter()
    if n <= 1000:
        embedder: Any = emb
        vectors = "real all-MiniLM-L6-v2"
    else:
        embedder = synth.PoolEmbedder(emb, corp)
        vectors = (
            f"pool: {len(corp.situations)} situation + {len(corp.lessons)} lesson sentences embedded "
            "for real, a memory = normalised sum of its two"
        )
    t_pool = time.perf_counter() - t0
    store = Store.init(root, embedder=embedder)
    t1 = time.perf_counter()
    for start in range(0, n, CHUNK):
        store.write_many(corp.items(start, min(n, start + CHUNK)), author="bench", message="synthetic")
    t_write = time.perf_counter() - t1
    store.close()
    info = {
        "n": n,
        "index_format": len(INDEX_MIGRATIONS),
        "vectors": vectors,
        "pool_embed_s": round(t_pool, 1),
        "write_many_s": round(t_write, 1),
        "memories_per_s": round(n / t_write, 1),
    }
    info_path.write_text(json.dumps(info))
    return root, info | {"reused": False}


def in_process(root: Path, emb: LazyEmbedder, qs: list[str], warmup: int = 5) -> dict[str, Any]:
    store = Store(root, embedder=emb)
    t0 = time.perf_counter()
    store.ensure_synced()
    t_sync = time.perf_counter() - t0
    for q in synth.queries(warmup, seed=99):
        store.search(q)
    parts: dict[str, list[float]] = {"embed": [], "words": [], "vectors": []}
    orig_embed, orig_words, orig_vec = emb.embed, store.index.search_words, store.index.search_vectors

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[name].append(time.perf_counter() - t)

        return wrapper

    lat: list[float] = []
    modes: set[str] = set()
    emb.embed = timed("embed", orig_embed)  # type: ignore[method-assign]
    store.index.search_words = timed("words", orig_words)  # type: ignore[method-assign]
    store.index.search_vectors = timed("vectors", orig_vec)  # type: ignore[method-assign]
    try:
        for q in qs:
            t = time.perf_counter()
            res = store.search(q)
            lat.append(time.perf_counter() - t)
            modes.add(res["mode"])
    finally:
        del emb.embed
        store.close()
    out = stats(lat) | {"modes": sorted(modes), "first_sync_s": round(t_sync, 2)}
    out["breakdown_p50_ms"] = {k: round(statistics.median(v) * 1000, 2) for k, v in parts.items() if v}
    out["breakdown_p50_ms"]["rest"] = round(out["p50_ms"] - sum(out["breakdown_p50_ms"].values()), 2)
    return out


def server_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SOMNA_EMBEDDER": "minilm",
        "SOMNA_ATTACH": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **extra,
    }
    env.pop("SOMNA_STORE", None)
    return env


async def _through_mcp(root: Path, qs: list[str], timeout: float) -> dict[str, Any]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "somna", "--store", str(root), "serve"], env=server_env()
    )
    with tempfile.TemporaryFile("w+") as err:
        async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            start = time.monotonic()
            warm = iter(synth.queries(400, seed=98))
            ready = 0
            while ready < 5:  # the model loads in the background; then a few warm calls
                res = await session.call_tool("search", {"query": next(warm)})
                if (res.structured_content or {}).get("mode") == "hybrid":
                    ready += 1
                elif time.monotonic() - start > timeout:
                    raise TimeoutError("the server never answered in hybrid mode")
                else:
                    await anyio.sleep(0.5)
            t_ready = time.monotonic() - start
            lat: list[float] = []
            modes: set[str] = set()
            for q in qs:
                t = time.perf_counter()
                res = await session.call_tool("search", {"query": q})
                lat.append(time.perf_counter() - t)
                assert not res.is_error, res.content
                modes.add((res.structured_content or {}).get("mode", "?"))
    return stats(lat) | {"modes": sorted(modes), "ready_after_s": round(t_ready, 1)}


def through_mcp(root: Path, qs: list[str], timeout: float = 600.0) -> dict[str, Any]:
    return anyio.run(_through_mcp, root, qs, timeout)


def measure(
    sizes: list[int],
    n_queries: int = 60,
    *,
    mcp: bool = True,
    rebuild: bool = False,
    emb: LazyEmbedder | None = None,
) -> dict[str, Any]:
    emb = emb or model()
    out: dict[str, Any] = {"sizes": {}, "queries": n_queries}
    for i, n in enumerate(sizes):
        root, info = build(n, emb, rebuild=rebuild)
        qs = synth.queries(n_queries * 2, seed=11 + i)
        row: dict[str, Any] = {"store": info, "load_before": os.getloadavg()[0]}
        row["in_process"] = in_process(root, emb, qs[:n_queries])
        if mcp:
            row["mcp"] = through_mcp(root, qs[n_queries:])
        row["load_after"] = os.getloadavg()[0]
        out["sizes"][str(n)] = row
        print(
            f"{n:>7}: in-process p50 {row['in_process']['p50_ms']} p95 {row['in_process']['p95_ms']} "
            f"{row['in_process']['breakdown_p50_ms']}"
            + (f"; mcp p50 {row['mcp']['p50_ms']} p95 {row['mcp']['p95_ms']}" if mcp else ""),
            file=sys.stderr,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--no-mcp", action="store_true")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args(argv)
    res = measure(
        [int(s) for s in args.sizes.split(",")], args.queries, mcp=not args.no_mcp, rebuild=args.rebuild
    )
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
