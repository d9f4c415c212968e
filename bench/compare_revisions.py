"""This checkout's somna against another revision's, side by side, on the rows a refactor must not slow:
the handshake, search through MCP at 10k memories, and writes through MCP.

    .venv/bin/python bench/compare_revisions.py REV [--rounds 3] [--handshakes 10] [--queries 40] [--writes 60]

REV is checked out in a temporary git worktree and run with this venv and PYTHONPATH set to its src/, so
both revisions share every installed package and the same cached 10k store (bench/search_latency.build).
The arms alternate within each round (the handshake's arms are shuffled per spawn), so load that comes
and goes on a shared machine falls on both. Results: bench/results/compare_revisions.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import handshake  # noqa: E402
import mcp_rows  # noqa: E402
import search_latency  # noqa: E402
import synth  # noqa: E402

OUT = BENCH / "results"


def worktree(rev: str, where: Path) -> str:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        check=True,
        capture_output=True,
    )
    return subprocess.run(
        ["git", "-C", str(where), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def arm_env(src: Path | None, pycache: Path) -> dict[str, str]:
    """The environment of one arm: its own bytecode cache and, for the other revision, its src/ first."""
    env = {"PYTHONPYCACHEPREFIX": str(pycache)}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def median_of(rows: list[dict[str, Any]], key: str, field: str) -> float:
    return round(statistics.median(r[key][field] for r in rows), 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rev", help="the revision to compare with (e.g. a commit before the change)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--handshakes", type=int, default=10, help="spawns per arm")
    ap.add_argument("--queries", type=int, default=40, help="searches per arm and round, at 10k")
    ap.add_argument("--writes", type=int, default=60, help="writes per arm and round")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="somna-bench-compare-"))
    old_tree = tmp / "old"
    try:
        old_sha = worktree(args.rev, old_tree)
        new_sha = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True
            ).stdout.strip()
        )
        arms = {"new": arm_env(None, tmp / "pyc-new"), "old": arm_env(old_tree / "src", tmp / "pyc-old")}

        # handshake: both arms and the bare server, shuffled within every round of spawns
        store = tmp / "handshake-store"
        subprocess.run(
            [sys.executable, "-m", "somna", "init", str(store)],
            check=True,
            capture_output=True,
            env={**os.environ, "SOMNA_HOME": str(tmp / "home")},
        )
        old_env = {
            **handshake.server_env(tmp / "home", tmp / "pyc-old-hs"),
            "PYTHONPATH": str(old_tree / "src"),
        }
        hs = handshake.measure(
            args.handshakes, extra={"somna-old": (handshake.argv_for("somna", store), old_env)}
        )
        handshakes = {
            "bare_ms": hs["bare"]["median_ms"],
            "new_ms": hs["somna"]["median_ms"],
            "old_ms": hs["arms"]["somna-old"]["median_ms"],
            "new_ratio": round(hs["ratio"], 3),
            "old_ratio": round(hs["extra_ratios_to_bare"]["somna-old"], 3),
        }

        emb = search_latency.model()
        store10k, _ = search_latency.build(10_000, emb)
        store1k, _ = search_latency.build(1_000, emb)
        search: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
        writes: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
        for r in range(args.rounds):
            order = ["new", "old"] if r % 2 == 0 else ["old", "new"]
            queries = synth.queries(args.queries, seed=300 + r)
            for arm in order:
                spec = mcp_rows.somna_spec(store10k, **arms[arm])
                search[arm].append(mcp_rows.session_rows(spec, writes=0, queries=queries))
                work = tmp / f"writes-{arm}-{r}"
                shutil.copytree(store1k, work, symlinks=True)
                spec = mcp_rows.somna_spec(work, **arms[arm])
                writes[arm].append(mcp_rows.session_rows(spec, writes=args.writes, queries=[]))
                shutil.rmtree(work, ignore_errors=True)
        result = {
            "new": new_sha + (" (with uncommitted changes in src)" if dirty else ""),
            "old": old_sha,
            "machine_load_1min": os.getloadavg()[0],
            "handshake": handshakes,
            "search_10k_mcp": {
                arm: {
                    "p50_ms": median_of(search[arm], "search", "p50_ms"),
                    "p95_ms": median_of(search[arm], "search", "p95_ms"),
                    "rounds_p50_ms": [x["search"]["p50_ms"] for x in search[arm]],
                }
                for arm in search
            },
            "writes_mcp": {
                arm: {
                    "per_s": median_of(writes[arm], "writes", "per_s"),
                    "p50_ms": median_of(writes[arm], "writes", "p50_ms"),
                    "rounds_per_s": [x["writes"]["per_s"] for x in writes[arm]],
                }
                for arm in writes
            },
            "settings": vars(args),
        }
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old_tree)], capture_output=True
        )
        shutil.rmtree(tmp, ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "compare_revisions.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    h, s, w = result["handshake"], result["search_10k_mcp"], result["writes_mcp"]
    md = [
        f"# {result['new']} against {result['old']}",
        "",
        f"Load average (1 min) at the end: {result['machine_load_1min']:.2f}. Settings: {result['settings']}.",
        "",
        "| row | this checkout | the other revision | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| handshake median (bare server {h['bare_ms']} ms) | {h['new_ms']} ms ({h['new_ratio']}×) "
        f"| {h['old_ms']} ms ({h['old_ratio']}×) | {h['new_ms'] / h['old_ms']:.2f} |",
        f"| search p50 through MCP, 10k | {s['new']['p50_ms']} ms | {s['old']['p50_ms']} ms "
        f"| {s['new']['p50_ms'] / s['old']['p50_ms']:.2f} |",
        f"| search p95 through MCP, 10k | {s['new']['p95_ms']} ms | {s['old']['p95_ms']} ms "
        f"| {s['new']['p95_ms'] / s['old']['p95_ms']:.2f} |",
        f"| writes/s through MCP | {w['new']['per_s']} | {w['old']['per_s']} | {w['new']['per_s'] / w['old']['per_s']:.2f} |",
        "",
        f"Per round, search p50: this {s['new']['rounds_p50_ms']}, other {s['old']['rounds_p50_ms']}; "
        f"writes/s: this {w['new']['rounds_per_s']}, other {w['old']['rounds_per_s']}.",
    ]
    (OUT / "compare_revisions.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
