"""Acceptance 7 of the core: two server processes writing to one store at once lose nothing."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import call, git_changes, mcp_client, somna

from somna.index import Index

pytestmark = pytest.mark.anyio
OPS = 100


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def unique_text() -> str:
    words = [secrets.token_hex(3) for _ in range(6)]
    return f"Setting {words[0]} must be {words[1]} when {words[2]} talks to {words[3]} via {words[4]} ({words[5]})."


async def agent(store: Path, name: str, done: list[dict[str, Any]]) -> None:
    """100 operations: writes, and every third op an edit of one of this agent's own memories."""
    async with mcp_client(store, name=name) as s:
        mine: list[tuple[str, str]] = []
        for i in range(OPS):
            if i % 3 == 2 and mine:
                mid, version = mine[i % len(mine)]
                marker = secrets.token_hex(4)
                out = await call(
                    s, "propose_edit", id=mid, op="append", base_version=version, text=f"Edit {marker}."
                )
                mine[i % len(mine)] = (mid, out["version"])
                done.append({"op": "edit", "id": mid, "marker": marker, "agent": name})
            else:
                out = await call(s, "write", content=unique_text())
                mine.append((out["id"], out["version"]))
                done.append({"op": "write", "id": out["id"], "agent": name})


async def test_two_servers_write_and_edit_at_once(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    done: list[dict[str, Any]] = []
    with anyio.fail_after(240):
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent, store, "agent-a", done)
            tg.start_soon(agent, store, "agent-b", done)
    assert len(done) == 2 * OPS
    writes = [d for d in done if d["op"] == "write"]
    edits = [d for d in done if d["op"] == "edit"]
    log = git_changes(store)
    index = Index(store / ".somna")
    try:
        for w in writes:
            assert (store / "memory" / f"{w['id']}.md").is_file(), w
            assert f"{w['agent']}|write {w['id']}:" in log, w
            assert index.get(w["id"]) is not None, w
        for e in edits:
            text = (store / "memory" / f"{e['id']}.md").read_text(encoding="utf-8")
            assert f"Edit {e['marker']}." in text, e
            row = index.get(e["id"])
            assert row is not None and f"Edit {e['marker']}." in row.body
        assert log.count("|append ") == len(edits)
        assert index.count() == len(writes) + 2  # plus the two default blocks
    finally:
        index.close()
    report = json.loads(somna("--store", str(store), "doctor", "--json").stdout)[0]
    assert report["ok"], report
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=store, capture_output=True, text=True
    ).stdout
    assert status == ""
