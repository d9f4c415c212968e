"""Skills over MCP: a real `somna serve` and the SDK's stdio client (acceptance 1, 3 and 4 of issue 3)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from conftest import call, somna
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.subscriptions import ToolsListChanged, listen
from mcp_types import Implementation
from test_skills import GOOD, generate, make_skill, malformed

from somna.scopes import Memory
from somna.server import compose_instructions
from somna.skills import tokens
from somna.store import Store

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def client(
    store: Path, inbox: list[Any] | None = None, *, env: dict[str, str] | None = None, handshake: bool = True
) -> AsyncIterator[ClientSession]:
    """conftest's mcp_client, plus a message handler that keeps every notification the server sends."""

    async def keep(message: Any) -> None:
        if inbox is not None:
            inbox.append(message)

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "somna", "--store", str(store), "serve"],
        env={**os.environ, **(env or {})},
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(
            read, write, client_info=Implementation(name="test-agent", version="1.0"), message_handler=keep
        ) as session:
            if handshake:
                await session.initialize()
            yield session


async def call_error(session: ClientSession, tool: str, **args: Any) -> str:
    result = await session.call_tool(tool, args)
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content if hasattr(c, "text"))


async def load_enum(session: ClientSession) -> list[str] | None:
    tools = {t.name: t for t in (await session.list_tools()).tools}
    return tools["load_skill"].input_schema["properties"]["name"].get("enum")


def new_store(tmp_path: Path) -> Path:
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    return store


async def test_catalog_load_read_and_malformed_over_stdio(tmp_path: Path) -> None:
    """Acceptance 1 and 4: catalog, load, read a reference, refusals; bad skills reported, the rest works."""
    store = new_store(tmp_path)
    assert somna("--store", str(store), "skills", "install").returncode == 0
    folder = make_skill(
        store / "skills", "rotate-tls-certs", "Renew and rotate TLS certificates before expiry."
    )
    (folder / "link-out").symlink_to(store / "blocks" / "user.md")
    malformed(store / "skills")
    async with client(store) as s:
        init = s.initialize_result
        assert init is not None and init.capabilities.tools and init.capabilities.tools.list_changed
        text = init.instructions or ""
        assert "Skills: 3 available (10 invalid: `somna skills check` says why)" in text
        assert text.index("Skills: 3 available") < text.index("## Skills")
        assert "- rotate-tls-certs: Renew and rotate TLS certificates before expiry." in text
        assert "- using-somna-memory: How to use somna" in text
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert {"search_skills", "load_skill", "propose_skill"} <= set(tools)
        assert tools["load_skill"].annotations.read_only_hint is True
        assert await load_enum(s) == ["rotate-tls-certs", "using-somna-memory", "writing-skills"]

        listed = await call(s, "search_skills")
        assert listed["mode"] == "list" and listed["total"] == 3
        bad = {x["name"]: x for x in listed["invalid"]}
        assert len(bad) == 10 and all(x["invalid"] for x in bad.values())
        assert ":3: error: front matter is not valid YAML" in bad["bad-yaml"]["problems"][0]
        assert "5,0" in json.dumps(bad["huge-body"]) and "not UTF-8" in json.dumps(bad["binary"])
        assert "invalid" in await call_error(s, "load_skill", name="mismatch")
        found = await call(s, "search_skills", query="certificate expired")
        assert found["skills"][0]["name"] == "rotate-tls-certs" and found["mode"] in ("words", "hybrid")

        loaded = await call(s, "load_skill", name="using-somna-memory")
        assert "# Using somna's memory well" in loaded["content"] and loaded["version"]
        assert [f["path"] for f in loaded["files"]] == ["references/examples.md"]
        ref = await call(s, "load_skill", name="using-somna-memory", file="references/examples.md")
        assert "brevity bias" in ref["content"]

        assert "no skill 'no-such-skill'" in await call_error(s, "load_skill", name="no-such-skill")
        for path in ("../rotate-tls-certs/SKILL.md", "/etc/passwd", "references/../../../blocks/user.md"):
            msg = await call_error(s, "load_skill", name="using-somna-memory", file=path)
            assert "outside" in msg, (path, msg)
        assert "outside" in await call_error(s, "load_skill", name="rotate-tls-certs", file="link-out")
        assert "no file" in await call_error(
            s, "load_skill", name="rotate-tls-certs", file="references/nope.md"
        )

        resources = {str(r.uri): r for r in (await s.list_resources()).resources}
        assert resources["somna://skills/rotate-tls-certs"].description.startswith("Renew and rotate")
        md = (await s.read_resource("somna://skills/writing-skills")).contents[0]
        assert isinstance(md, types.TextResourceContents) and md.text.startswith("---\nname: writing-skills")
        assert "somna://skills/mismatch" not in resources

        written = await call(s, "write", content="Memory still works while skills are broken.")
        assert (await call(s, "search", query="skills are broken"))["hits"][0]["id"] == written["id"]


async def test_skill_dropped_while_connected_appears_with_list_changed(tmp_path: Path) -> None:
    """Acceptance 3: drop, edit, delete a skill folder while connected; then learn one through a proposal."""
    store = new_store(tmp_path)
    inbox: list[Any] = []
    async with client(store, inbox) as s:
        assert await load_enum(s) is None  # no skills yet: a plain string
        staged = make_skill(tmp_path / "staging", "squash-migrations", "Squash Django migrations into one.")
        start = anyio.current_time()
        staged.rename(store / "skills" / "squash-migrations")  # dropped in, as a whole folder
        kinds = (types.ToolListChangedNotification, types.ResourceListChangedNotification)
        with anyio.fail_after(2):  # both, each its own message: the second may come a moment after the first
            while not all(any(isinstance(m, kind) for m in inbox) for kind in kinds):
                await anyio.sleep(0.02)
        assert anyio.current_time() - start < 2
        assert await load_enum(s) == ["squash-migrations"]
        assert (await call(s, "search_skills", query="django migrations"))["skills"][0][
            "name"
        ] == "squash-migrations"
        assert "Steps." in (await call(s, "load_skill", name="squash-migrations"))["content"]

        inbox.clear()  # an edit changes the resources, not the tool
        md = store / "skills" / "squash-migrations" / "SKILL.md"
        md.write_text(GOOD.format(name="squash-migrations", desc="Squash them, then test."), encoding="utf-8")
        with anyio.fail_after(2):
            while not any(isinstance(m, types.ResourceListChangedNotification) for m in inbox):
                await anyio.sleep(0.02)
        assert not any(isinstance(m, types.ToolListChangedNotification) for m in inbox)
        assert (await call(s, "search_skills"))["skills"][0]["description"] == "Squash them, then test."

        inbox.clear()
        shutil.rmtree(store / "skills" / "squash-migrations")
        with anyio.fail_after(2):
            while not any(isinstance(m, types.ToolListChangedNotification) for m in inbox):
                await anyio.sleep(0.02)
        assert await load_enum(s) is None
        assert "no skill" in await call_error(s, "load_skill", name="squash-migrations")

        # learning: propose a skill, accept the proposal, and it is served within 2 s like a dropped one
        text = GOOD.format(
            name="learned-skill", desc="Learned from three tasks. Use when it recurs."
        ).replace(" Details in [the guide](references/guide.md).", "")
        assert "broken reference" in await call_error(
            s, "propose_skill", name="learned-skill", content=text + "See [x](references/x.md).\n"
        )
        out = await call(s, "propose_skill", name="learned-skill", content=text, reason="recurred")
        assert out["status"] == "proposed" and await load_enum(s) is None
        pending = (await call(s, "proposals"))["proposals"]
        assert [p["target"] for p in pending] == ["skill:learned-skill"]
        accepted = await call(s, "proposals", action="accept", id=out["proposal"])
        assert accepted["status"] == "applied" and accepted["id"] == "skill:learned-skill"
        with anyio.fail_after(2):
            while await load_enum(s) != ["learned-skill"]:
                await anyio.sleep(0.05)
        loaded = await call(s, "load_skill", name="learned-skill")
        stale = await call_error(
            s, "propose_skill", name="learned-skill", content=text + "more\n", base_version="000000000000"
        )
        assert "conflict" in stale and loaded["version"] in stale
        edit = await call(
            s, "propose_skill", name="learned-skill", content=text + "more\n", base_version=loaded["version"]
        )
        assert edit["status"] == "proposed"


async def test_list_changed_reaches_a_2026_era_listener(tmp_path: Path) -> None:
    """Clients on the newer protocol (server/discover, no initialize) hear it on subscriptions/listen."""
    store = new_store(tmp_path)
    async with client(store, handshake=False) as s:
        await s.discover()
        async with listen(s, tools_list_changed=True) as events:
            make_skill(store / "skills", "fresh-skill", "Arrived while listening.")
            with anyio.fail_after(2):
                event = await events.__anext__()
            assert isinstance(event, ToolsListChanged)
        assert await load_enum(s) == ["fresh-skill"]


@pytest.mark.slow
async def test_thousand_skills_within_budget_over_stdio(tmp_path: Path) -> None:
    """Acceptance 2 end to end (the fast suite checks the same in process, test_skills.py)."""
    store = new_store(tmp_path)
    queries = generate(store / "skills", 1000)
    opened = Store(store)
    base = compose_instructions(Memory({"store": opened}), 1500)  # the same instructions, without skills
    opened.close()
    async with client(store, env={"SOMNA_SKILLS_BUDGET": "600"}) as s:
        text = s.initialize_result.instructions or ""  # type: ignore[union-attr]
        assert tokens(text) - tokens(base) <= 600
        assert "Skills: 1000, too many to list within 600 tokens: `search_skills`" in text
        assert await load_enum(s) is None
        for name, query, _ in queries[::97]:
            hits = (await call(s, "search_skills", query=query, limit=5))["skills"]
            assert hits[0]["name"] == name, (query, hits[:2])
