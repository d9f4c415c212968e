"""Write somna's MCP server entry into a harness's own configuration, and take it out again.

plan()/uninstall() read the harness's file and return Changes (old text, new text); apply() writes them.
Edits are textual: everything outside somna's entry keeps its bytes (comments, order, formatting), the
result is parsed again and compared with what was meant before anything is written, and a file that
cannot be parsed is refused untouched. Claude Code is driven through `claude mcp add/remove` when that
CLI is on PATH, since Claude Code itself rewrites ~/.claude.json while it runs.

The package, one job a module: harnesses (which file, which entry), servers (somna's entry in it), hooks
(Claude Code's hooks), jsonc and toml_edit (editing either format without losing a comment), documents
(parsing and checking an edit), changes (writing it). This module is the face the rest of somna imports.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from somna.install import servers
from somna.install.changes import BACKUP_SUFFIX, Action, Change, InstallError, apply
from somna.install.harnesses import (
    HARNESSES,
    NOTES,
    SCOPES,
    SERVER_NAME,
    check,
    config_path,
    default_command,
    project_root,
)
from somna.install.hooks import (
    HOOK_ARGS,
    HOOK_EVENTS,
    HOOK_TIMEOUT,
    hook_group,
    plan_hooks,
    settings_path,
    uninstall_hooks,
)
from somna.install.servers import plan, uninstall

__all__ = [
    "BACKUP_SUFFIX",
    "HARNESSES",
    "HOOK_ARGS",
    "HOOK_EVENTS",
    "HOOK_TIMEOUT",
    "SCOPES",
    "SERVER_NAME",
    "Action",
    "Change",
    "InstallError",
    "apply",
    "config_path",
    "default_command",
    "hook_group",
    "plan",
    "plan_hooks",
    "run_install",
    "settings_path",
    "uninstall",
    "uninstall_hooks",
]

_HOOKS_NOTE = (
    "Claude Code's hooks: SessionStart runs `somna context` (the core blocks and skills catalog "
    "join each session in full); SessionEnd and PreCompact run `somna capture` (each session's "
    "transcript goes to the store's inbox, secrets redacted, for sleep-time to learn from). "
    "--no-hooks leaves them out."
)


def run_install(
    harness: str,
    scope: str,
    dry_run: bool,
    uninstall: bool,
    *,
    home: Path | None = None,
    project: Path | None = None,
    hooks: bool = True,
) -> int:
    """The `somna install|uninstall <harness>` command: plans, applies, prints; raises InstallError.

    For Claude Code (unless `hooks` is False) also its hooks: SessionStart runs `somna context`, SessionEnd
    and PreCompact run `somna capture`."""
    check(harness, scope)
    environ: Mapping[str, str] = os.environ if home is None else {}
    use_cli = harness == "claude-code" and home is None and shutil.which("claude") is not None
    home = home if home is not None else Path.home()
    project = project if project is not None else project_root(Path.cwd())
    if uninstall:  # the flag shadows the function here, hence servers.uninstall
        changes = servers.uninstall(
            harness, scope, home=home, project=project, use_cli=use_cli, environ=environ
        )
    else:
        changes = servers.plan(
            harness,
            scope,
            home=home,
            project=project,
            command=default_command(),
            use_cli=use_cli,
            environ=environ,
        )
    hook_changes: list[Change] = []
    if harness == "claude-code" and hooks:
        hook_changes = (
            uninstall_hooks(scope, home=home, project=project, environ=environ)
            if uninstall
            else plan_hooks(scope, home=home, project=project, command=default_command(), environ=environ)
        )
    for line in apply([*changes, *hook_changes], dry_run=dry_run):
        print(line)
    if not uninstall and any(c.changed for c in changes) and (harness, scope) in NOTES:
        print(NOTES[(harness, scope)])
    if not uninstall and any(c.changed for c in hook_changes):
        print(_HOOKS_NOTE)
    return 0
