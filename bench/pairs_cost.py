"""Benchmark: what asking for the query's word pairs as phrases costs the words side (issue 15).

    .venv/bin/python bench/pairs_cost.py [--stores bench/results/tmp/stores] [--sizes 10000,100000]

On the synthetic stores that bench/search_latency.py builds (read from a copy of their index, never
written), `Index.search_words(q, 80)` with and without `fusion.word_pairs(q)`, for 120 distinct queries
of `synth.queries`, three rounds, alternating; p50/p95 in ms. The words side only: no embedding, no
fusion. Writes bench/results/pairs_cost.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import synth  # noqa: E402

from somna.fusion import word_pairs  # noqa: E402
from somna.index import Index  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", type=Path, default=HERE / "results" / "tmp" / "stores")
    ap.add_argument("--sizes", default="10000,100000")
    args = ap.parse_args()
    lines = [
        "# Word pairs as phrases: the cost on the words side",
        "",
        f"`bench/pairs_cost.py --sizes {args.sizes}` · load average before: {os.getloadavg()[0]:.1f}",
        "",
        "| memories | without pairs p50 / p95 ms | with pairs p50 / p95 ms |",
        "| ---: | ---: | ---: |",
    ]
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("index.db", "state.db"):
                shutil.copy(args.stores / str(n) / ".somna" / name, Path(tmp) / name)
            idx = Index(Path(tmp))
            qs = synth.queries(120, seed=11)
            for q in qs[:20]:  # the words' row counts are cached after a first query
                idx.search_words(q, 80, word_pairs(q))
            took: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(3):
                for q in qs:
                    for pairs in (False, True):
                        t = time.perf_counter()
                        idx.search_words(q, 80, word_pairs(q) if pairs else None)
                        took[pairs].append((time.perf_counter() - t) * 1000)
            idx.close()
        cells = []
        for pairs in (False, True):
            xs = sorted(took[pairs])
            cells.append(f"{statistics.median(xs):.2f} / {xs[int(len(xs) * 0.95)]:.2f}")
        lines.append(f"| {n:,} | {cells[0]} | {cells[1]} |")
        print(lines[-1], flush=True)
    (HERE / "results" / "pairs_cost.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
