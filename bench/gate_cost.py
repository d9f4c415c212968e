"""What the gate costs: one sleep cycle on copies of the bench's 10k store, with the gate and without it
(`somna sleep --no-gate`), each a fresh copy, run as a person would run it. Writes
bench/results/gate_cost.{json,md}.

    .venv/bin/python bench/gate_cost.py [--n 10000] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search_latency  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _kinds(actions: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in actions:
        out[a.get("kind", "?")] = out.get(a.get("kind", "?"), 0) + 1
    return out


def cycle(root: Path, gate: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="somna-gate-cost-") as tmp:
        work = Path(tmp) / "store"
        shutil.copytree(root, work, symlinks=True)
        env = {**os.environ, "SOMNA_EMBEDDER": "minilm", "HF_HUB_OFFLINE": "1"}
        env.pop("SOMNA_STORE", None)
        cmd = [sys.executable, "-m", "somna", "--store", str(work), "sleep", "--json"]
        t0 = time.perf_counter()
        res = subprocess.run(cmd + ([] if gate else ["--no-gate"]), capture_output=True, text=True, env=env,
                             timeout=3600)  # fmt: skip
        seconds = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(res.stderr[-2000:])
        report = json.loads(res.stdout)
        return {
            "gate": gate,
            "seconds": round(seconds, 1),
            "applied": _kinds(report.get("applied", [])),
            "queued": _kinds(report.get("queued", [])),
            "exam": report.get("exam"),
            "dropped": [d.get("why", "")[:160] for d in report.get("dropped", [])][:10],
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args(argv)
    root, info = search_latency.build(args.n, search_latency.model())
    runs = []
    for _ in range(args.runs):  # interleaved, so that a busy machine weighs on both alike
        runs += [cycle(root, gate=False), cycle(root, gate=True)]
    without = min(r["seconds"] for r in runs if not r["gate"])
    with_gate = min(r["seconds"] for r in runs if r["gate"])
    out = {"memories": args.n, "store": info, "runs": runs, "ratio": round(with_gate / without, 2)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gate_cost.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    lines = [
        f"### The gate's cost: one sleep cycle at {args.n:,} memories",
        "",
        "| gate | seconds | applied | queued | exam |",
        "| --- | ---: | --- | --- | --- |",
    ]
    lines += [f"| {'on' if r['gate'] else 'off'} | {r['seconds']} | {r['applied']} | {r['queued']} | {r['exam']} |"
              for r in runs]  # fmt: skip
    lines += ["", f"- best with the gate / best without: **{out['ratio']}×** (target < 2×)"]
    dropped = [d for r in runs if r["gate"] for d in r["dropped"]]
    if dropped:
        lines += ["- dropped by the gate (first few): " + "; ".join(dropped[:3])]
    (RESULTS / "gate_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
