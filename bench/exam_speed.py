"""What `somna exam` costs, phase by phase, and what it answers, probe by probe: to make it faster without
changing a single outcome. Runs in one process on a copy of a store (the bench's synthetic store of --n
memories, or the coding corpus written as bench/coding_consolidation.py writes it) and times deriving the
probes, embedding their queries and asking them; writes every outcome (pass, answering memory, rank, hits)
to --dump, and with --against compares them, probe for probe, with a dump of another revision.

    .venv/bin/python bench/exam_speed.py --n 10000 [--all] --dump /tmp/exam-new.json [--against OLD.json]
    .venv/bin/python bench/exam_speed.py --coding /tmp/coding-store --dump /tmp/exam-coding.json

`somna exam` as a person runs it (a new process, the model loaded) is timed by bench/gate_cost.py.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import coding_consolidation as coding  # noqa: E402
import search_latency  # noqa: E402

from somna.sleep import exam  # noqa: E402
from somna.store import Store  # noqa: E402


def open_store(args: argparse.Namespace, tmp: Path) -> Store:
    emb = search_latency.model()
    if args.coding:  # built once and kept: its memory ids are new each time it is written
        root = args.coding
        if not root.exists():
            store, _ = coding.somna_open(root, "model")
            corpus, _ = coding.load(coding.DATA)
            coding.write_in_time_order(store, corpus, seed=0)
            store.close()
    else:
        root, _ = search_latency.build(args.n, emb)
    shutil.copytree(root, tmp / "store", symlinks=True)
    return Store(tmp / "store", embedder=emb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument(
        "--coding", type=Path, help="the coding corpus's store in this folder (written if absent)"
    )
    ap.add_argument("--all", action="store_true", help="every derived probe, not `somna exam`'s sample")
    ap.add_argument("--dump", type=Path, help="write every outcome here (JSON)")
    ap.add_argument("--against", type=Path, help="compare with the outcomes of another revision")
    ap.add_argument("--profile", type=int, default=0, help="print the N most costly functions")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="somna-exam-speed-") as tmp:
        store = open_store(args, Path(tmp))
        store.ensure_synced()
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        t0 = time.perf_counter()
        probes = exam.probes_of(store)
        asked = probes if args.all else exam.sample(probes, exam.SAMPLE)
        t1 = time.perf_counter()
        outcomes = exam.run(store, asked)
        t2 = time.perf_counter()
        if prof:
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)
        store.close()
    took = {"probes": len(asked), "score": round(exam.score(outcomes), 4), "derive_s": round(t1 - t0, 2),
            "run_s": round(t2 - t1, 2), "load": round(os.getloadavg()[0], 1)}  # fmt: skip
    print(json.dumps(took))
    rows = {o.probe.id: [o.passed, o.answered_by, o.rank, o.hits] for o in outcomes}
    if args.dump:
        args.dump.write_text(json.dumps(rows))
    if args.against:
        old = json.loads(args.against.read_text())
        differ = sorted(k for k in old.keys() | rows.keys() if old.get(k) != rows.get(k))
        print(f"{len(differ)} of {len(rows)} outcomes differ from {args.against}")
        for k in differ[:5]:
            print(" ", k, "before", old.get(k), "now", rows.get(k))
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
