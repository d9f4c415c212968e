"""A fast subset of bench/handshake.py as a regression guard: generous bounds, ratios not times.

A change that puts torch (or any heavy import, or slow start-up work) on the handshake path fails here.
"""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import handshake  # noqa: E402  (bench/ is not a package)


def test_handshake_stays_close_to_a_bare_server() -> None:
    report = handshake.measure(3)
    assert report["heavy_check"]["ok"], report["heavy_check"]
    assert report["ratio"] < 2.0, f"somna serve handshake is {report['ratio']:.2f}x a bare MCPServer"


def test_server_memory_and_tool_tokens_stay_lean(tmp_path) -> None:  # noqa: ANN001
    """A fast subset of bench/run.py's session rows, as ratios and sizes, not times: right after
    `initialize`, `somna serve` (real model configured, loading in the background) holds no torch and
    at most 2.5x the memory of a bare one-tool MCPServer; its tool definitions (name, description, input
    schema: what a harness shows the model) do not grow past ~15% over today's 6,833 characters (1,898
    cl100k tokens; the target is 2,000: docs/benchmarks.md)."""
    import mcp_rows

    from somna.store import Store

    Store.init(tmp_path / "store").close()
    somna = mcp_rows.somna_spec(tmp_path / "store", SOMNA_EMBEDDER="minilm")
    bare = mcp_rows.ServerSpec(
        "bare",
        [sys.executable, str(REPO / "bench" / "bare_server.py")],
        somna.env,
        "echo",
        lambda q: {"text": q},
        "echo",
        lambda c, i: {"text": c},
        "bare_server",
    )
    rows = {spec.name: mcp_rows.first_contact(spec) for spec in (bare, somna)}
    s, b = rows["somna"], rows["bare"]
    assert not s["torch_loaded_at_initialize"], s
    assert s["rss_after_initialize_mb"] <= 2.5 * b["rss_after_initialize_mb"], rows
    assert s["tool_model_tokens"]["chars"] <= 7_900, s["tool_model_tokens"]
