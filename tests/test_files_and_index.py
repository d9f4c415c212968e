"""Files are the truth: human edits, rebuilds, and broken files on disk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import mcp_client, somna

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def git_log(store: Path) -> list[str]:
    out = subprocess.run(["git", "log", "--format=%an|%s"], cwd=store, capture_output=True, text=True).stdout
    return out.splitlines()


def search_json(store: Path, query: str) -> dict[str, Any]:
    proc = somna("--store", str(store), "search", "--json", "--limit", "5", *query.split())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_hand_edit_is_picked_up_by_reindex_and_committed_as_human(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    out = json.loads(somna("--store", str(store), "add", "--json", "Deploys go through make release.").stdout)
    path = store / out["path"]
    path.write_text(
        path.read_text(encoding="utf-8").replace("make release", "just ship-it"), encoding="utf-8"
    )
    proc = somna("--store", str(store), "reindex", "--words")
    assert proc.returncode == 0, proc.stderr
    hits = search_json(store, "ship-it")["hits"]
    assert hits and hits[0]["id"] == out["id"]
    assert git_log(store)[0].startswith("human|human edit picked up by somna")
    assert json.loads(somna("--store", str(store), "doctor", "--json").stdout)[0]["consistent"]


async def test_hand_edit_is_picked_up_at_next_server_start(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    async with mcp_client(store) as s:
        mid = (await s.call_tool("write", {"content": "Lint with ruff check src"})).structured_content["id"]
    path = store / "memory" / f"{mid}.md"
    path.write_text(
        path.read_text(encoding="utf-8").replace("ruff check src", "flake8 legacy/"), encoding="utf-8"
    )
    new = store / "memory" / "notes" / "by-hand.md"
    new.parent.mkdir()
    new.write_text(
        "A memory a person wrote in their editor: the VPN needs split tunnelling.\n", encoding="utf-8"
    )
    async with mcp_client(store) as s:
        hits = (await s.call_tool("search", {"query": "flake8 legacy"})).structured_content["hits"]
        assert hits[0]["id"] == mid
        hits = (await s.call_tool("search", {"query": "split tunnelling VPN"})).structured_content["hits"]
        assert hits[0]["id"] == "by-hand"
    log = git_log(store)
    assert log[0].startswith("human|human edit picked up by somna")
    shown = subprocess.run(
        ["git", "show", "--stat", "HEAD"], cwd=store, capture_output=True, text=True
    ).stdout
    assert "by-hand.md" in shown and f"{mid}.md" in shown


def test_rebuild_from_files_gives_the_same_results(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    for text in (
        "Postgres runs on port 5433 in dev, not 5432.",
        "Feature flags live in config/flags.yaml.",
        "The CI cache key includes the lockfile hash.",
        "Never run migrations on Friday afternoons.",
        "Prefer small pull requests with one concern each.",
    ):
        assert somna("--store", str(store), "add", text).returncode == 0
    queries = [
        "postgres port",
        "feature flags config",
        "ci cache lockfile",
        "migrations friday",
        "pull requests",
    ]
    before = [search_json(store, q) for q in queries]
    for suffix in ("", "-wal", "-shm"):
        (store / ".somna" / f"index.db{suffix}").unlink(missing_ok=True)
    assert somna("--store", str(store), "reindex").returncode == 0
    after = [search_json(store, q) for q in queries]
    assert before == after
    assert all(b["hits"] for b in before)
    assert somna("--store", str(store), "reindex", "--full").returncode == 0
    assert [search_json(store, q) for q in queries] == before


async def test_broken_files_are_reported_never_crash_never_lost(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    somna("--store", str(store), "add", "A healthy memory about rate limits.")
    bad = {
        "memory/bad-yaml.md": b"---\ntitle: [unclosed\n---\nbody\n",
        "memory/no-close.md": b"---\ntitle: x\nbody without closing fence\n",
        "memory/latin1.md": "caf\u00e9 cr\u00e8me".encode("latin-1"),
        "memory/binary.md": bytes(range(256)) * 4,
        "memory/list-front.md": b"---\n- a\n- b\n---\nbody\n",
    }
    for rel, data in bad.items():
        (store / rel).write_bytes(data)
    report = somna("--store", str(store), "doctor", "--json")
    assert report.returncode == 1
    found = {b["path"] for b in json.loads(report.stdout)[0]["bad_files"]}
    assert set(bad) <= found
    async with mcp_client(store) as s:
        hits = (await s.call_tool("search", {"query": "rate limits"})).structured_content["hits"]
        assert hits and "healthy" in hits[0]["snippet"]
        with anyio.fail_after(10):
            result = await s.call_tool("read", {"id": "bad-yaml"})
        assert result.is_error
    for rel, data in bad.items():
        assert (store / rel).read_bytes() == data, rel
    human = somna("--store", str(store), "doctor")
    assert "bad-yaml.md" in human.stdout and "not valid YAML" in human.stdout
