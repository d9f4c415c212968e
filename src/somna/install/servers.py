"""somna's MCP server entry in a harness's file: what installing it, or taking it out, would change.

plan()/uninstall() read the file and return Changes (old text, new text) for apply() to write. Edits are
textual: everything outside somna's entry keeps its bytes (comments, order, formatting), the result is parsed
again and compared with what was meant before anything is written, and a file that cannot be parsed is
refused untouched.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from somna.install import jsonc, toml_edit
from somna.install.changes import Action, Change, InstallError, backup_of, newline, read
from somna.install.documents import document, json_root, verify
from somna.install.harnesses import (
    SERVER_NAME,
    Target,
    claude_add,
    claude_remove,
    locate,
    owned,
    uses_cli,
)


def plan(
    harness: str,
    scope: str,
    *,
    home: Path,
    project: Path,
    command: Sequence[str],
    use_cli: bool | None = None,
    platform: str = sys.platform,
    environ: Mapping[str, str] | None = None,
) -> list[Change]:
    """What installing somna for `harness` at `scope` would change (use_cli None: `claude` if on PATH)."""
    if not command:
        raise InstallError("the command that launches somna is empty")
    target = locate(harness, scope, home, project, platform, environ or {})
    old = read(target.path)
    current = _entry_in(target, old)
    mine = owned(harness, command)
    desired = {**current, **mine} if isinstance(current, dict) else mine
    if current == desired:
        return [Change(target.path, old, old, "installed")]
    action: Action = "add" if current is None else "update"
    if uses_cli(harness, use_cli):
        commands = [claude_remove(scope)] if current is not None else []
        commands.append(claude_add(scope, command))
        return [Change(target.path, old, old, action, tuple(commands), project)]
    new = _with_entry(target, old or "", desired)
    expected = document(target, old) if old is not None and old.strip() else {}
    expected.setdefault(target.container, {})[SERVER_NAME] = desired
    verify(target, new, expected)
    return [Change(target.path, old, new, action)]


def uninstall(
    harness: str,
    scope: str,
    *,
    home: Path,
    project: Path,
    use_cli: bool | None = None,
    platform: str = sys.platform,
    environ: Mapping[str, str] | None = None,
) -> list[Change]:
    """What removing somna's entry would change: the file somna created goes, a backup that only
    lacks somna's entry comes back byte for byte, and otherwise just the entry is cut out."""
    target = locate(harness, scope, home, project, platform, environ or {})
    old = read(target.path)
    current = _entry_in(target, old)
    if old is None or current is None:
        return [Change(target.path, old, old, "absent")]
    if uses_cli(harness, use_cli):
        return [Change(target.path, old, old, "remove", (claude_remove(scope),), project)]
    backup = read(backup_of(target.path))
    if isinstance(current, dict) and backup is not None:
        try:
            if _entry_in(target, backup) is None and _with_entry(target, backup, current) == old:
                return [Change(target.path, old, backup, "restore")]
        except InstallError:
            pass  # a broken backup is not ours to restore
    if isinstance(current, dict) and old == _fresh(target, current):
        return [Change(target.path, old, None, "delete")]
    new = _without_entry(target, old)
    expected = document(target, old)
    del expected[target.container][SERVER_NAME]
    verify(target, new, expected)
    return [Change(target.path, old, new, "remove")]


def _entry_in(target: Target, text: str | None) -> Any:
    if text is None or not text.strip():
        return None
    return (document(target, text).get(target.container) or {}).get(SERVER_NAME)


def _fresh(target: Target, entry: dict[str, Any]) -> str:
    """The whole file as somna writes it when there was none: only its own entry."""
    if target.syntax == "toml":
        return toml_edit.table(entry, "\n")
    return json.dumps({target.container: {SERVER_NAME: entry}}, indent=2, ensure_ascii=False) + "\n"


def _with_entry(target: Target, text: str, entry: dict[str, Any]) -> str:
    """`text` with somna's entry set to `entry`, every other byte kept."""
    if not text.strip():
        return _fresh(target, entry)
    if target.syntax == "toml":
        return toml_edit.with_entry(text, entry, target.path)
    root = json_root(target, text)
    line_end = newline(text)
    box = jsonc.member(root, target.container, target.path)
    if box is None:
        return jsonc.insert(text, root, target.container, {SERVER_NAME: entry}, line_end)
    own = jsonc.member(box[1], SERVER_NAME, target.path)
    if own is None:
        return jsonc.insert(text, box[1], SERVER_NAME, entry, line_end)
    indent = jsonc.members_indent(text, box[1])
    node = own[1]
    return (
        text[: node.start] + jsonc.dump(entry, indent, jsonc.indent_unit(text), line_end) + text[node.end :]
    )


def _without_entry(target: Target, text: str) -> str:
    if target.syntax == "toml":
        return toml_edit.without_entry(text, target.path)
    box = jsonc.member(json_root(target, text), target.container, target.path)
    assert box is not None
    return jsonc.cut_member(text, box[1], SERVER_NAME, target.path)
