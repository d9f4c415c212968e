"""A project store that travels with its project: created, pushed, and brought to a teammate's fresh clone
with one command; the teammate's agent (a real MCP session) finds the team's memories, and the project's
own branch holds no somna commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import git, mcp_client, somna

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.test", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


async def test_a_fresh_clone_plus_one_command_brings_the_teams_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "team.git"
    run(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    project = tmp_path / "app"
    project.mkdir()
    run(project, "init", "-q", "-b", "main")
    (project / "app.py").write_text("print('hi')\n")
    run(project, "add", "app.py")
    run(project, "commit", "-q", "-m", "first commit of the app")
    run(project, "remote", "add", "origin", str(remote))
    run(project, "push", "-q", "origin", "main")

    made = somna("init", "--project", cwd=project)
    assert made.returncode == 0, made.stderr
    assert "created store" in made.stdout and (project / ".somna-store/memory").is_dir()
    assert git(project, "status", "--porcelain") == "?? .gitignore\n"  # the store itself is ignored
    added = somna(
        "add",
        "The payments service must be called with an idempotency key on every POST.",
        "--title",
        "idempotency keys",
        "--scope",
        "project",
        cwd=project,
    )
    assert added.returncode == 0, added.stderr
    synced = somna("sync", "--scope", "project", cwd=project)
    assert synced.returncode == 0 and "pushed" in synced.stdout, synced.stderr
    run(project, "add", ".gitignore")
    run(project, "commit", "-q", "-m", "ignore the somna store")
    run(project, "push", "-q", "origin", "main")

    clone = tmp_path / "teammate"
    run(tmp_path, "clone", "-q", str(remote), str(clone))
    joined = somna("init", "--project", cwd=clone)  # the one command of the README
    assert joined.returncode == 0, joined.stderr
    assert "joined the team's store" in joined.stdout

    monkeypatch.chdir(clone)  # the teammate's agent starts in the project
    async with mcp_client(name="teammate-agent") as session:
        result = await session.call_tool("search", {"query": "idempotency key payments POST"})
        data: Any = result.structured_content
        assert data["hits"] and data["hits"][0]["title"] == "idempotency keys"
        assert data["hits"][0]["scope"] == "project"

    for where in (project, clone):
        authors = set(git(where, "log", "--format=%an", "main").split("\n")) - {""}
        assert authors == {"Dev"}  # no somna commit on the project's branch
        files = git(where, "log", "--name-only", "--format=", "main").split()
        assert sorted(set(files)) == [".gitignore", "app.py"]
    assert "somna/memory" in git(clone, "branch", "--list", "somna/memory")
    assert git(clone, "status", "--porcelain") == ""
