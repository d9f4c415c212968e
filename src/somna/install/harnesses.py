"""Where each harness keeps its MCP servers: which file, which table in it, and what somna's entry holds.

Claude Code is driven through its `claude mcp add/remove` CLI when that is on PATH, since Claude Code itself
rewrites ~/.claude.json while it runs.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from somna.install.changes import InstallError

HARNESSES = ("claude-code", "cursor", "codex", "vscode")
SCOPES = ("user", "project")
SERVER_NAME = "somna"

# Printed after an install that a harness will not use until the person does something more.
NOTES = {
    ("claude-code", "project"): "Claude Code asks each user to approve servers from .mcp.json on first use.",
    ("codex", "project"): "Codex reads .codex/config.toml only in projects it trusts.",
}


@dataclass(frozen=True)
class Target:
    """A harness's configuration file at one scope, its format, and the table that holds the servers."""

    harness: str
    scope: str
    path: Path
    syntax: Literal["json", "jsonc", "toml"]
    container: str


def config_path(
    harness: str,
    scope: str,
    *,
    home: Path,
    project: Path,
    platform: str = sys.platform,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The file that holds `harness`'s MCP servers at `scope` (environ: CLAUDE_CONFIG_DIR, CODEX_HOME...)."""
    return locate(harness, scope, home, project, platform, environ or {}).path


def check(harness: str, scope: str) -> None:
    if harness not in HARNESSES:
        raise InstallError(f"unknown harness {harness!r}; choose one of: {', '.join(HARNESSES)}")
    if scope not in SCOPES:
        raise InstallError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")


def locate(
    harness: str, scope: str, home: Path, project: Path, platform: str, environ: Mapping[str, str]
) -> Target:
    """The file, format and server table `harness` uses at `scope`."""
    check(harness, scope)
    user = scope == "user"
    if harness == "claude-code":
        root = Path(environ["CLAUDE_CONFIG_DIR"]) if environ.get("CLAUDE_CONFIG_DIR", "").strip() else home
        return Target(
            harness, scope, root / ".claude.json" if user else project / ".mcp.json", "json", "mcpServers"
        )
    if harness == "cursor":
        return Target(
            harness, scope, (home if user else project) / ".cursor" / "mcp.json", "json", "mcpServers"
        )
    if harness == "codex":
        codex_home = Path(environ["CODEX_HOME"]) if user and environ.get("CODEX_HOME") else None
        folder = codex_home or (home if user else project) / ".codex"
        return Target(harness, scope, folder / "config.toml", "toml", "mcp_servers")
    if not user:
        return Target(harness, scope, project / ".vscode" / "mcp.json", "jsonc", "servers")
    if platform == "darwin":
        base = home / "Library" / "Application Support"
    elif platform == "win32":
        base = Path(environ["APPDATA"]) if environ.get("APPDATA") else home / "AppData" / "Roaming"
    else:
        base = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
    return Target(harness, scope, base / "Code" / "User" / "mcp.json", "jsonc", "servers")


def owned(harness: str, command: Sequence[str]) -> dict[str, Any]:
    """The keys somna sets in its entry; any other key a user adds to the entry is kept."""
    entry: dict[str, Any] = {"type": "stdio"} if harness in ("claude-code", "vscode") else {}
    return {**entry, "command": command[0], "args": [*command[1:], "serve"]}


def default_command() -> list[str]:
    """How a harness should launch this somna: its console script, else `python -m somna`."""
    name = "somna.exe" if sys.platform == "win32" else "somna"
    sibling = Path(sys.executable).with_name(name)
    if sibling.is_file():
        return [str(sibling.absolute())]
    found = shutil.which("somna")
    return [str(Path(found).absolute())] if found else [sys.executable, "-m", "somna"]


def uses_cli(harness: str, use_cli: bool | None) -> bool:
    """Whether to go through `claude mcp` (use_cli None: when `claude` is on PATH)."""
    if harness != "claude-code":
        return False
    return shutil.which("claude") is not None if use_cli is None else use_cli


def claude_add(scope: str, command: Sequence[str]) -> tuple[str, ...]:
    return ("claude", "mcp", "add", "--scope", scope, SERVER_NAME, "--", *command, "serve")


def claude_remove(scope: str) -> tuple[str, ...]:
    return ("claude", "mcp", "remove", "--scope", scope, SERVER_NAME)


def project_root(start: Path) -> Path:
    """The git work tree `start` is in, else `start` itself: a project's files belong at its root."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start
