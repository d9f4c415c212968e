"""The core API in-process: edits, proposals, feedback, blocks, ids."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from somna import notes
from somna.embeddings import HashEmbedder
from somna.errors import Conflict, DuplicateFound, InvalidInput, NotFound
from somna.store import Store


def test_write_refuses_a_near_duplicate_and_offers_its_id(store: Store) -> None:
    first = store.write("Run the linter with `ruff check src tests` before pushing.", author="a")
    with pytest.raises(DuplicateFound) as err:
        store.write("Run the linter with `ruff check src tests` before pushing!", author="b")
    assert err.value.duplicate_id == first["id"]
    assert first["id"] in str(err.value)
    forced = store.write("Run the linter with `ruff check src tests` before pushing!", author="b", force=True)
    assert forced["id"] != first["id"]


def test_str_replace_counts_matches(store: Store) -> None:
    out = store.write("port 8080 for web, port 8080 for admin", author="a")
    with pytest.raises(InvalidInput, match="occurs 2 time"):
        store.edit(out["id"], "str_replace", out["version"], old="8080", new="9090", author="a")
    done = store.edit(out["id"], "str_replace", out["version"], old="8080", new="9090", count=2, author="a")
    assert store.read(out["id"])["content"].count("9090") == 2
    with pytest.raises(Conflict) as err:
        store.edit(out["id"], "append", out["version"], text="x", author="a")
    assert err.value.current_version == done["version"] and "9090" in err.value.current_text


def test_archive_hides_from_search_but_keeps_the_file(store: Store) -> None:
    out = store.write("The old deploy script lives in scripts/deploy-v1.sh", author="a")
    store.edit(out["id"], "archive", out["version"], reason="replaced by deploy-v2", author="a")
    assert store.search("deploy script")["hits"] == []
    hits = store.search("deploy script", include_archived=True)["hits"]
    assert hits[0]["id"] == out["id"] and hits[0]["status"] == "archived"
    assert (store.root / out["path"]).exists()


def test_policy_propose_queues_then_accept_applies(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Store.init(root).close()
    (root / "somna.toml").write_text('[policy]\n"blocks/*" = "propose"\n', encoding="utf-8")
    store = Store(root, embedder=HashEmbedder())
    block = store.read("block:project")
    out = store.edit("block:project", "append", block["version"], text="Use Python 3.11.", author="agent")
    assert out["status"] == "proposed"
    assert "Use Python 3.11." not in store.read("block:project")["content"]
    pending = store.proposals()
    assert len(pending) == 1 and "+Use Python 3.11." in pending[0]["diff"]
    accepted = store.accept(out["proposal"], author="human")
    assert accepted["status"] == "applied"
    assert "Use Python 3.11." in store.read("block:project")["content"]
    assert store.proposals() == []
    with pytest.raises(NotFound):
        store.accept(out["proposal"], author="human")


def test_stale_proposal_is_a_conflict_and_reject_removes_it(tmp_path: Path) -> None:
    root = tmp_path / "p"
    Store.init(root).close()
    (root / "somna.toml").write_text('[policy]\n"memory/**" = "propose"\n', encoding="utf-8")
    store = Store(root, embedder=HashEmbedder())
    mem = store.write("Cache TTL is 300 seconds.", author="a")
    prop = store.edit(mem["id"], "str_replace", mem["version"], old="300", new="600", author="a")
    store.edit(mem["id"], "append", mem["version"], text="Set in settings.py.", author="a", policy="apply")
    with pytest.raises(Conflict):
        store.accept(prop["proposal"], author="human")
    assert store.reject(prop["proposal"], author="human")["status"] == "rejected"
    assert store.proposals() == []


def test_block_limit_is_enforced(store: Store) -> None:
    block = store.read("block:user")
    with pytest.raises(InvalidInput, match="limit"):
        store.edit("block:user", "replace", block["version"], text="x" * 2001, author="a")


def test_feedback_ranks_helpful_above_harmful(store: Store) -> None:
    a = store.write("Build the docs with mkdocs build --strict.", author="a")
    b = store.write("Build the docs with sphinx-build -W docs out.", author="a")
    store.feedback([b["id"]] * 3, "helpful", author="a")
    store.feedback([a["id"]] * 3, "harmful", author="a")
    assert store.search("build the docs")["hits"][0]["id"] == b["id"]
    with pytest.raises(InvalidInput):
        store.feedback([a["id"]], "meh", author="a")


def test_revert_restores_and_commits(store: Store) -> None:
    out = store.write("Timeout is 30 s.", author="a")
    store.edit(out["id"], "replace", out["version"], text="Timeout is 60 s.", author="a")
    back = store.revert(out["id"], author="human")
    assert back["version"] == out["version"]
    assert store.read(out["id"])["content"] == "Timeout is 30 s.\n"
    with pytest.raises(InvalidInput, match="already"):
        store.revert(out["id"], to=back["to_commit"], author="human")
    log = subprocess.run(
        ["git", "log", "--format=%an|%s", "-1"], cwd=store.root, capture_output=True, text=True
    )
    assert log.stdout.startswith("human|revert")


@pytest.mark.parametrize("bad", ["", "../x", "/etc/passwd", "A-B", "x" * 81, "a/b", "a\x00", "ü"])
def test_ids_are_plain(bad: str) -> None:
    with pytest.raises(InvalidInput):
        notes.check_id(bad)


def test_parse_keeps_unknown_keys_and_dates_as_strings() -> None:
    note = notes.parse("---\nid: x1\ncreated: 2026-01-02T03:04:05Z\ncustom: keep me\n---\nbody\n")
    assert note.meta["created"] == "2026-01-02T03:04:05Z"
    assert "custom: keep me" in notes.serialize(note)


def test_secrets_are_redacted_before_anything_is_stored(store: Store) -> None:
    key = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    out = store.write(f"The CI bot token is {key}; it rotates monthly.", author="agent")
    assert out["redacted"] == ["github_token"]
    on_disk = (store.root / out["path"]).read_text(encoding="utf-8")
    assert key not in on_disk and "[REDACTED:github_token]" in on_disk
    log = subprocess.run(["git", "log", "-p"], cwd=store.root, capture_output=True, text=True).stdout
    assert key not in log
    edited = store.edit(
        out["id"], "append", out["version"], text="DB_PASSWORD=hunter2hunter2", author="agent"
    )
    assert edited["redacted"] == ["password"]
    assert "hunter2hunter2" not in (store.root / out["path"]).read_text(encoding="utf-8")


def test_secrets_policy_refuse(tmp_path: Path) -> None:
    root = tmp_path / "r"
    Store.init(root).close()
    (root / "somna.toml").write_text('[secrets]\npolicy = "refuse"\n', encoding="utf-8")
    store = Store(root, embedder=HashEmbedder())
    with pytest.raises(InvalidInput, match="refuses secrets"):
        store.write("key AKIAIOSFODNN7EXAMPLF in use", author="a")
    assert not list((root / "memory").glob("*.md"))


def test_bookkeeping_edits_update_the_row_in_place(store: Store) -> None:
    """A change of front matter only (a link, a status) keeps the row, its words and its vector: no other
    process reloads its vectors for it. A change of text re-indexes the row."""
    a = store.write("The staging database lives on host pg-staging-1.", author="agent")
    b = store.write("Deploys to staging go through the Buildkite pipeline.", author="agent")
    row, gen = store.index.get(a["id"]), store.index.get_meta("vec_gen")
    assert store.index.vectors([row.rowid])
    out = store.edit(a["id"], "meta", a["version"], author="somna-sleep", meta={"related": [b["id"]]})
    after = store.index.get(a["id"])
    assert after.rowid == row.rowid and after.related == [b["id"]] and after.version == out["version"]
    assert store.index.get_meta("vec_gen") == gen and store.index.vectors([row.rowid])
    assert store.search("pg-staging-1 host", mode="words")["hits"][0]["id"] == a["id"]
    store.edit(a["id"], "str_replace", out["version"], author="agent", old="pg-staging-1", new="pg-staging-2")
    changed = store.index.get(a["id"])
    assert changed.rowid != row.rowid and store.index.get_meta("vec_gen") != gen
    assert store.search("pg-staging-2 host", mode="words")["hits"][0]["id"] == a["id"]
