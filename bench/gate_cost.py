"""What the gate costs: one sleep cycle on copies of the bench's 10k store, with the gate and without it
(`somna sleep --no-gate`), each a fresh copy, run as a person would run it; and `somna exam` on the same
store. Writes bench/results/gate_cost.{json,md} with the command line, the seconds of wall time and of CPU
(the child's user + system: the machine is shared, and its load average is recorded too).

    .venv/bin/python bench/gate_cost.py [--n 10000] [--runs 1] [--keep DIR] [--no-exam | --exam-only]

--keep DIR saves each cycle's JSON report there, to compare the plans of two revisions action for action.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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


def timed(
    cmd: list[str], ok: tuple[int, ...] = (0,)
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run a somna command as a person would; its wall and CPU seconds, and the load average around it."""
    env = {**os.environ, "SOMNA_EMBEDDER": "minilm", "HF_HUB_OFFLINE": "1"}
    env.pop("SOMNA_STORE", None)
    load0, cpu0, t0 = os.getloadavg()[0], resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "somna", *cmd], capture_output=True, text=True, env=env,
                         timeout=7200)  # fmt: skip
    seconds, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode not in ok:
        raise RuntimeError(res.stderr[-2000:])
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return res, {"seconds": round(seconds, 1), "cpu_s": round(cpu, 1),
                 "load": [round(load0, 1), round(os.getloadavg()[0], 1)]}  # fmt: skip


def exam_time(root: Path) -> dict[str, Any]:
    """`somna exam` (its default sample) on a copy of the store."""
    with tempfile.TemporaryDirectory(prefix="somna-gate-cost-") as tmp:
        work = Path(tmp) / "store"
        shutil.copytree(root, work, symlinks=True)
        res, took = timed(["--store", str(work), "exam", "--json"], ok=(0, 1))  # 1: some probe fails
        out = json.loads(res.stdout)
        return took | {"probes": out["probes"], "score": round(out["score"], 4)}


def cycle(root: Path, gate: bool, keep: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="somna-gate-cost-") as tmp:
        work = Path(tmp) / "store"
        shutil.copytree(root, work, symlinks=True)
        cmd = ["--store", str(work), "sleep", "--json"]
        res, took = timed(cmd + ([] if gate else ["--no-gate"]))
        report = json.loads(res.stdout)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            kept = {k: report.get(k) for k in ("applied", "queued", "dropped", "exam")}
            (keep / f"cycle-{'gate' if gate else 'nogate'}.json").write_text(json.dumps(kept, indent=1))
        return {
            "gate": gate,
            **took,
            "applied": _kinds(report.get("applied", [])),
            "queued": _kinds(report.get("queued", [])),
            "exam": report.get("exam"),
            "dropped": [d.get("why", "")[:160] for d in report.get("dropped", [])][:10],
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="save each cycle's JSON report in this folder")
    ap.add_argument("--no-exam", action="store_true", help="do not time `somna exam`")
    ap.add_argument("--exam-only", action="store_true", help="time `somna exam` only, no cycle")
    ap.add_argument("--out", default="gate_cost", help="results file name (bench/results/NAME.{json,md})")
    args = ap.parse_args(argv)
    root, info = search_latency.build(args.n, search_latency.model())
    exams = [] if args.no_exam else [exam_time(root) for _ in range(args.runs)]
    runs = []
    for _ in range(0 if args.exam_only else args.runs):  # interleaved: a busy machine weighs on both alike
        runs += [cycle(root, gate=False, keep=args.keep), cycle(root, gate=True, keep=args.keep)]
    ratio = {k: round(min(r[k] for r in runs if r["gate"]) / min(r[k] for r in runs if not r["gate"]), 2)
             for k in ("seconds", "cpu_s")} if runs else {"seconds": None, "cpu_s": None}  # fmt: skip
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    command = "python bench/gate_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": command, "machine": machine, "memories": args.n, "store": info, "exam": exams,
           "runs": runs, "ratio": ratio["seconds"], "ratio_cpu": ratio["cpu_s"]}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    lines = [
        f"### The gate's cost: one sleep cycle at {args.n:,} memories",
        "",
        f"`{command.strip()}` on {machine['cpus']} CPUs shared with other work (load average: 1-minute, "
        "before and after each command).",
        "",
    ]
    lines += [f"- `somna exam` ({e['probes']} probes, score {e['score']}): **{e['seconds']} s** wall, "
              f"{e['cpu_s']} s CPU, load {e['load']} (target < 30 s)" for e in exams]  # fmt: skip
    lines += (
        []
        if not runs
        else [
            "",
            "| gate | seconds | CPU s | load | applied | queued | exam |",
            "| --- | ---: | ---: | --- | --- | --- | --- |",
        ]
    )
    lines += [f"| {'on' if r['gate'] else 'off'} | {r['seconds']} | {r['cpu_s']} | {r['load']} | {r['applied']} | "
              f"{r['queued']} | {r['exam']} |" for r in runs]  # fmt: skip
    lines += [] if not runs else ["", f"- best with the gate / best without: **{ratio['seconds']}×** wall, "
                                  f"**{ratio['cpu_s']}×** CPU (target < 2×)"]  # fmt: skip
    dropped = [d for r in runs if r["gate"] for d in r["dropped"]]
    if dropped:
        lines += ["- dropped by the gate (first few): " + "; ".join(dropped[:3])]
    (RESULTS / f"{args.out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
