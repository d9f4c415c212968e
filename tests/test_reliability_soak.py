"""Load: MCP servers, the CLI and the daemon on one store at once (bench/soak.py); nothing acknowledged is lost.

The fast test runs 5 processes for 6 s; the slow one is the bench itself: 8 processes for 60 s.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO


def load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_soak", REPO / "bench" / "soak.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(out: dict[str, object]) -> None:
    assert out["lost"] == 0, out
    assert out["corrupt_files"] == [] and out["doctor_consistent"] and out["doctor_ok"], out
    assert out["git_status"] == "", out
    assert out["other_error_samples"] == [], out  # conflicts and the like are expected; nothing else is


def test_short_soak_loses_nothing(tmp_path: Path) -> None:
    out = load_soak().run(tmp_path / "store", seconds=6, servers=3, cli=1, seed=5)
    check(out)
    assert out["ops_total"] > 50 and out["acknowledged_writes"] > 10


@pytest.mark.slow
def test_sixty_second_soak_of_eight_processes_loses_nothing(tmp_path: Path) -> None:
    out = load_soak().run(tmp_path / "store", seconds=60, servers=5, cli=2, seed=1)
    check(out)
    assert out["processes"]["total"] == 8
