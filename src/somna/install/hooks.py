"""Claude Code's hooks: SessionStart runs `somna context`; SessionEnd and PreCompact run `somna capture`.

They live in Claude Code's settings.json, beside a person's own hooks; somna adds, updates and cuts out only
its own matcher group in each event's list, by the same textual edits as its server entry.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from somna.install import jsonc
from somna.install.changes import Change, InstallError, backup_of, newline, read
from somna.install.documents import document, json_root, verify
from somna.install.harnesses import Target, check

HOOK_EVENTS = ("SessionStart", "SessionEnd", "PreCompact")
# SessionStart: `somna context` prints the guidance, core blocks and skills catalog, which Claude Code adds to
# the session (server instructions are cut at ~2 KB there); the others capture the transcript.
HOOK_ARGS = {
    "SessionStart": ("context",),
    "SessionEnd": ("capture", "--harness", "claude-code"),
    "PreCompact": ("capture", "--harness", "claude-code"),
}
HOOK_TIMEOUT = 60  # seconds; Claude Code allows a SessionEnd hook 1.5 s unless it declares a timeout
_HOOK_MARK = re.compile(r"\bsomna\b.*\bcapture --harness claude-code\b|\bsomna\s+context\s*$")


def settings_path(scope: str, *, home: Path, project: Path, environ: Mapping[str, str] | None = None) -> Path:
    """Claude Code's settings file, where hooks live: ~/.claude/settings.json or .claude/settings.json."""
    check("claude-code", scope)
    env = environ or {}
    if scope == "user":
        custom = env.get("CLAUDE_CONFIG_DIR", "").strip()
        return (Path(custom) if custom else home / ".claude") / "settings.json"
    return project / ".claude" / "settings.json"


def hook_group(command: Sequence[str], event: str = "SessionEnd") -> dict[str, Any]:
    """The matcher group somna adds to `event` (no matcher: every session start and end, every compaction)."""
    line = shlex.join([*command, *HOOK_ARGS[event]])
    return {"hooks": [{"type": "command", "command": line, "timeout": HOOK_TIMEOUT}]}


def _ours(group: Any) -> bool:
    """Whether a matcher group is somna's: one of its handlers runs `somna context` or `somna capture`."""
    handlers = group.get("hooks") if isinstance(group, dict) else None
    return isinstance(handlers, list) and any(
        isinstance(h, dict) and isinstance(h.get("command"), str) and _HOOK_MARK.search(h["command"])
        for h in handlers
    )


def _hook_lists(target: Target, settings: dict[str, Any]) -> dict[str, list[Any]]:
    """Each of somna's events -> its list of matcher groups (refuses shapes somna would have to guess at)."""
    events = settings.get("hooks") or {}
    out: dict[str, list[Any]] = {}
    for event in HOOK_EVENTS:
        groups = events.get(event, [])
        if not isinstance(groups, list):
            raise InstallError(f"{target.path}: hooks.{event} is not a list; somna changed nothing.")
        if sum(_ours(g) for g in groups) > 1:
            raise InstallError(f"{target.path}: somna's {event} hook is there twice; edit the file by hand.")
        out[event] = groups
    return out


def _target(scope: str, home: Path, project: Path, environ: Mapping[str, str]) -> Target:
    """The settings file as a Target, so that the server entry's reading and checking serve it too."""
    return Target(
        "claude-code",
        scope,
        settings_path(scope, home=home, project=project, environ=environ),
        "json",
        "hooks",
    )


def _set_group(target: Target, text: str, event: str, group: dict[str, Any]) -> str:
    """`text` with somna's group in hooks.<event> set to `group` (appended when absent); the rest kept."""
    if not text.strip():
        return json.dumps({"hooks": {event: [group]}}, indent=2, ensure_ascii=False) + "\n"
    line_end, unit = newline(text), jsonc.indent_unit(text)
    root = json_root(target, text)
    box = jsonc.member(root, "hooks", target.path)
    if box is None:
        return jsonc.insert(text, root, "hooks", {event: [group]}, line_end)
    found = jsonc.member(box[1], event, target.path)
    if found is None:
        return jsonc.insert(text, box[1], event, [group], line_end)
    array = found[1]
    elements = array.elements or []
    mine = [e for e in elements if _ours(e.value)]
    if mine:
        indent: str | None = jsonc.line_indent(text, mine[0].start)
        if text[text.rfind("\n", 0, mine[0].start) + 1 : mine[0].start].strip():
            indent = None  # it shares its line with something else: keep it on one line
        return text[: mine[0].start] + jsonc.dump(group, indent, unit, line_end) + text[mine[0].end :]
    if not elements:
        outer = jsonc.line_indent(text, array.start)
        added = jsonc.dump(group, outer + unit, unit, line_end)
        return (
            text[: array.start + 1]
            + f"{line_end}{outer}{unit}{added}{line_end}{outer}"
            + text[array.end - 1 :]
        )
    last = elements[-1]
    before = text[text.rfind("\n", 0, last.start) + 1 : last.start]
    if before.strip():  # compact: [{...}, {...}]
        return text[: last.end] + ", " + jsonc.dump(group, None, unit, line_end) + text[last.end :]
    return (
        text[: last.end]
        + f",{line_end}{before}{jsonc.dump(group, before, unit, line_end)}"
        + text[last.end :]
    )


def _cut_group(target: Target, text: str, event: str) -> str:
    """`text` without somna's group in hooks.<event>; an emptied list, and an emptied hooks, go too."""
    root = json_root(target, text)
    box = jsonc.member(root, "hooks", target.path)
    assert box is not None
    found = jsonc.member(box[1], event, target.path)
    assert found is not None
    elements = found[1].elements or []
    i = next(k for k, e in enumerate(elements) if _ours(e.value))
    if len(elements) > 1:
        if i + 1 < len(elements):
            return text[: elements[i].start] + text[elements[i + 1].start :]
        return text[: elements[i - 1].end] + text[elements[i].end :]
    text = jsonc.cut_member(text, box[1], event, target.path)
    root = json_root(target, text)
    box = jsonc.member(root, "hooks", target.path)
    if box is not None and not box[1].members:
        text = jsonc.cut_member(text, root, "hooks", target.path)
    return text


def plan_hooks(
    scope: str,
    *,
    home: Path,
    project: Path,
    command: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> list[Change]:
    """What adding somna's capture hooks to Claude Code's settings would change (merged, idempotent)."""
    target = _target(scope, home, project, environ or {})
    old = read(target.path)
    settings = document(target, old) if old is not None and old.strip() else {}
    lists = _hook_lists(target, settings)
    new = old or ""
    had = False
    for event, groups in lists.items():
        group = hook_group(command, event)
        mine = [k for k, g in enumerate(groups) if _ours(g)]
        had = had or bool(mine)
        if mine and groups[mine[0]] == group:
            continue
        new = _set_group(target, new, event, group)
        if mine:
            groups[mine[0]] = group
        else:
            settings.setdefault("hooks", {}).setdefault(event, []).append(group)
    if new == (old or ""):
        return [Change(target.path, old, old, "installed")]
    verify(target, new, settings)
    return [Change(target.path, old, new, "update" if had else "add")]


def uninstall_hooks(
    scope: str, *, home: Path, project: Path, environ: Mapping[str, str] | None = None
) -> list[Change]:
    """What taking somna's hooks out would change: a file somna created goes, a backup that only lacks
    somna's hooks comes back byte for byte, and otherwise just somna's groups are cut out."""
    target = _target(scope, home, project, environ or {})
    old = read(target.path)
    if old is None or not old.strip():
        return [Change(target.path, old, old, "absent")]
    settings = document(target, old)
    lists = _hook_lists(target, settings)
    mine = {event: g for event, groups in lists.items() for g in groups if _ours(g)}
    if not mine:
        return [Change(target.path, old, old, "absent")]

    def with_mine(text: str) -> str:
        for event, group in mine.items():
            text = _set_group(target, text, event, group)
        return text

    backup = read(backup_of(target.path))
    if backup is not None:
        try:
            before = _hook_lists(target, document(target, backup)) if backup.strip() else {}
            clean = backup.strip() and not any(_ours(g) for gs in before.values() for g in gs)
            if clean and with_mine(backup) == old:
                return [Change(target.path, old, backup, "restore")]
        except InstallError:
            pass  # a broken backup is not ours to restore
    if with_mine("") == old:
        return [Change(target.path, old, None, "delete")]
    new = old
    for event in mine:
        new = _cut_group(target, new, event)
        groups = [g for g in lists[event] if not _ours(g)]
        if groups:
            settings["hooks"][event] = groups
        else:
            del settings["hooks"][event]
    if not settings.get("hooks"):
        settings.pop("hooks", None)
    verify(target, new, settings)
    return [Change(target.path, old, new, "remove")]
