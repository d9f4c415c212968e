"""Shared fixtures: every test gets its own store under tmp_path and a fast, deterministic embedder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import Implementation

from somna.app import open_store
from somna.embeddings import HashEmbedder
from somna.store import Store

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def somna_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home-store"
    monkeypatch.setenv("SOMNA_HOME", str(home))
    monkeypatch.setenv("SOMNA_EMBEDDER", "hash")
    monkeypatch.setenv("SOMNA_DAEMON", "off")  # a test that wants `somna serve` to start daemons says so
    monkeypatch.delenv("SOMNA_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    yield home


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "store", embedder=HashEmbedder(), create=True)
    yield s
    s.close()


def somna(
    *args: str, cwd: Path | None = None, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `somna` command."""
    return subprocess.run(
        [sys.executable, "-m", "somna", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        input=input,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@asynccontextmanager
async def mcp_client(
    store: Path | None = None,
    *,
    name: str = "test-agent",
    env: dict[str, str] | None = None,
    errlog: object = None,
) -> AsyncIterator[ClientSession]:
    """A real MCP client session over stdio against a spawned `somna serve` process."""
    args = ["-m", "somna"] + (["--store", str(store)] if store else []) + ["serve"]
    params = StdioServerParameters(command=sys.executable, args=args, env={**os.environ, **(env or {})})
    kwargs = {"errlog": errlog} if errlog is not None else {}
    async with stdio_client(params, **kwargs) as (read, write):
        async with ClientSession(
            read, write, client_info=Implementation(name=name, version="1.0")
        ) as session:
            await session.initialize()
            yield session


def git(root: Path, *args: str) -> str:
    """git's output in a store, for tests that read history."""
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def git_changes(root: Path) -> str:
    """`git log` as one "author|change" line per change: a grouped commit (group commit) lists its
    changes in its body as "- change" lines, and each becomes a line of its own."""
    out = subprocess.run(
        ["git", "log", "--format=%an%x1f%B%x00"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    lines = []
    for record in out.split("\x00"):
        author, _, body = record.strip().partition("\x1f")
        if not author:
            continue
        items = [line[2:] for line in body.splitlines() if line.startswith("- ")]
        lines += [f"{author}|{item}" for item in items] or [
            f"{author}|{body.splitlines()[0] if body else ''}"
        ]
    return "\n".join(lines) + "\n"


async def call(session: ClientSession, tool: str, **args: Any) -> dict[str, Any]:
    """A tool call over MCP that must succeed; its structured result."""
    result = await session.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content
