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
