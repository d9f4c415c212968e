"""Acceptance 2 of the core: a real `somna serve` process driven by the SDK's stdio client."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import call, git_changes, mcp_client, somna
from mcp import ClientSession

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def call_error(session: ClientSession, tool: str, **args: Any) -> str:
    result = await session.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content if hasattr(c, "text"))


async def test_full_session_over_stdio(tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    async with mcp_client(store, name="claude-code") as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert {
            "search",
            "read",
            "write",
            "propose_edit",
            "history",
            "revert",
            "feedback",
            "proposals",
        } <= set(tools)
        assert tools["search"].annotations.read_only_hint is True
        assert tools["revert"].annotations.destructive_hint is True

        facts = [
            ("On HTTP 429 from the billing API, back off 2 s and retry only idempotent GETs.", "billing 429"),
            ("The staging database is reached through the bastion at bastion.internal port 2222.", "bastion"),
            (
                "Use `uv pip compile` to refresh requirements.lock; never edit it by hand.",
                "requirements.lock",
            ),
        ]
        ids = []
        for content, _ in facts:
            ids.append((await call(s, "write", content=content, type="lesson"))["id"])
        for (_content, query), mid in zip(facts, ids, strict=True):
            hits = (await call(s, "search", query=query))["hits"]
            assert hits and hits[0]["id"] == mid, (query, hits)

        first = await call(s, "read", id=ids[0])
        assert "back off 2 s" in first["content"]
        base = first["version"]

        edited = await call(
            s,
            "propose_edit",
            id=ids[0],
            op="str_replace",
            base_version=base,
            old="back off 2 s",
            new="back off 5 s",
        )
        assert edited["status"] == "applied" and edited["version"] != base

        conflict = await call_error(
            s,
            "propose_edit",
            id=ids[0],
            op="append",
            base_version=base,
            text="Also log the Retry-After header.",
        )
        assert "conflict" in conflict and edited["version"] in conflict and "back off 5 s" in conflict

        hist = await call(s, "history", id=ids[0])
        versions = [v["version"] for v in hist["versions"]]
        assert versions[:2] == [edited["version"], base]
        assert [v["author"] for v in hist["versions"][:2]] == ["claude-code", "claude-code"]
        assert "-On HTTP 429 from the billing API, back off 2 s" in hist["diff"]
        assert "+On HTTP 429 from the billing API, back off 5 s" in hist["diff"]

        reverted = await call(s, "revert", id=ids[0], to=hist["versions"][1]["commit"])
        assert reverted["version"] == base
        hits = (await call(s, "search", query="back off 2 s billing"))["hits"]
        assert hits[0]["id"] == ids[0] and "back off 2 s" in hits[0]["snippet"]
        assert "2 s" in (await call(s, "read", id=ids[0]))["content"]

    # Writes close together land as one commit per author (group commit), each named in its message;
    # the server commits what is pending when it stops.
    log = git_changes(store)
    assert log.count("claude-code|") == 5, log  # 3 writes, 1 edit, 1 revert
    report = json.loads(somna("--store", str(store), "doctor", "--json").stdout)
    assert report[0]["consistent"]


async def test_bad_input_is_a_clear_tool_error(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    outside = tmp_path / "secret.md"
    outside.write_text("---\nid: secret\n---\nTOP SECRET\n", encoding="utf-8")
    (store / "memory" / "link.md").symlink_to(outside)
    async with mcp_client(store) as s:
        assert "empty" in await call_error(s, "write", content="   ")
        assert "100000" in (await call_error(s, "write", content="x" * 100_001)).replace(",", "").replace(
            "_", ""
        )
        assert "no memory" in await call_error(s, "read", id="does-not-exist")
        for bad in ("../../etc/passwd", "/etc/passwd", "memory/../../x", "a\x00b", "link", "..", "C:\\x"):
            msg = await call_error(s, "read", id=bad)
            assert "not valid" in msg or "no memory" in msg or "outside" in msg, (bad, msg)
        assert "TOP SECRET" not in json.dumps(await call(s, "search", query="TOP SECRET"))
        assert "no block" in await call_error(s, "read", id="block:nope")
        assert "not valid" in await call_error(s, "read", id="block:../../x")
        # the server is still up and answering
        assert (await call(s, "write", content="still alive after bad input"))["id"]
    assert not (tmp_path / "etc").exists()


async def test_client_errors_leave_store_unchanged(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    before = subprocess.run(["git", "rev-parse", "HEAD"], cwd=store, capture_output=True, text=True).stdout
    async with mcp_client(store) as s:
        await call_error(s, "write", content="")
        await call_error(s, "propose_edit", id="nope-1234", op="append", base_version="abc", text="x")
        await call_error(s, "feedback", ids=["../x"], signal="helpful")
        await call_error(s, "revert", id="block:user")
    after = subprocess.run(["git", "rev-parse", "HEAD"], cwd=store, capture_output=True, text=True).stdout
    assert before == after
    assert not subprocess.run(
        ["git", "status", "--porcelain"], cwd=store, capture_output=True, text=True
    ).stdout


async def test_blocks_are_in_instructions_and_resources(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    block = store / "blocks" / "project.md"
    block.write_text(
        block.read_text(encoding="utf-8") + "Python 3.11, src layout, tests in tests/.\n", encoding="utf-8"
    )
    async with mcp_client(store) as s:
        with anyio.fail_after(30):
            result = await s.list_resources()
        uris = {str(r.uri) for r in result.resources}
        assert "somna://blocks/store/project" in uris
        text = (await s.read_resource("somna://blocks/store/project")).contents[0].text
        assert "src layout" in text
        read = await call(s, "read", id="block:project")
        assert "src layout" in read["content"]


async def test_handshake_imports_nothing_heavy(tmp_path: Path) -> None:
    """With the real default embedder configured, torch & co. load only after the handshake."""
    store = tmp_path / "s"
    somna("init", str(store))
    errlog = tmp_path / "stderr.log"
    with errlog.open("w", encoding="utf-8") as err:
        async with mcp_client(
            store, env={"SOMNA_EMBEDDER": "minilm", "SOMNA_LOG_LEVEL": "INFO"}, errlog=err
        ) as s:
            out = await call(s, "search", query="anything at all")
            assert out["mode"] in ("words", "hybrid")
            with anyio.fail_after(10):
                while "handshake answered" not in errlog.read_text(encoding="utf-8"):
                    await anyio.sleep(0.05)
    assert "heavy modules loaded before it: none" in errlog.read_text(encoding="utf-8")
