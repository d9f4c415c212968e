"""A correction that sleep-time has not paired yet never ranks below the stale memory it replaces."""

from __future__ import annotations

from pathlib import Path

from somna.embeddings import HashEmbedder
from somna.store import Store

OLD = "The catalog service cache TTL is 300 seconds in production."
NEW = "The catalog service cache TTL is 900 seconds in production."


def note(root: Path, name: str, text: str, created: str) -> None:
    (root / "memory" / f"{name}.md").write_text(
        f"---\nid: {name}\ntitle: {text}\ncreated: '{created}'\nupdated: '{created}'\n---\n{text}\n", encoding="utf-8")


def order(tmp_path: Path, created_300: str, created_900: str) -> list[str]:
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        note(store.root, "ttl-300", OLD, created_300)
        note(store.root, "ttl-900", NEW, created_900)
        note(store.root, "other", "The billing API rate limit is 100 requests per minute.", "2026-01-01T00:00:00Z")
        store.sync()
        hits = store.search("catalog cache TTL production", limit=5)["hits"]
        words = store.search("catalog cache TTL production", limit=5, mode="words")["hits"]
        assert {h["id"] for h in words} >= {"ttl-300", "ttl-900"}
        return [h["id"] for h in hits if h["id"].startswith("ttl-")]
    finally:
        store.close()


def test_the_newer_of_two_near_identical_memories_ranks_first(tmp_path: Path) -> None:
    assert order(tmp_path / "a", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z") == ["ttl-900", "ttl-300"]
    assert order(tmp_path / "b", "2026-03-01T00:00:00Z", "2026-01-01T00:00:00Z") == ["ttl-300", "ttl-900"]
