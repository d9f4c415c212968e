"""Write somna's MCP server entry into a harness's own configuration, and take it out again.

plan()/uninstall() read the harness's file and return Changes (old text, new text); apply() writes them.
Edits are textual: everything outside somna's entry keeps its bytes (comments, order, formatting), the
result is parsed again and compared with what was meant before anything is written, and a file that
cannot be parsed is refused untouched. Claude Code is driven through `claude mcp add/remove` when that
CLI is on PATH, since Claude Code itself rewrites ~/.claude.json while it runs.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from somna.errors import SomnaError

HARNESSES = ("claude-code", "cursor", "codex", "vscode")
SCOPES = ("user", "project")
SERVER_NAME = "somna"
BACKUP_SUFFIX = ".somna-backup"

Action = Literal["add", "update", "remove", "delete", "restore", "installed", "absent"]
_MESSAGES: dict[str, tuple[str, str]] = {  # (dry run, done)
    "add": ("would add somna to {path}", "added somna to {path}"),
    "update": ("would update somna in {path}", "updated somna in {path}"),
    "remove": ("would remove somna from {path}", "removed somna from {path}"),
    "delete": ("would delete {path} (somna created it)", "deleted {path} (somna created it)"),
    "restore": ("would restore {path} from {backup}", "restored {path} from {backup}"),
    "installed": ("{path}: somna is already installed", "{path}: somna is already installed"),
    "absent": ("{path}: somna is not installed", "{path}: somna is not installed"),
}
_NOTES = {
    ("claude-code", "project"): "Claude Code asks each user to approve servers from .mcp.json on first use.",
    ("codex", "project"): "Codex reads .codex/config.toml only in projects it trusts.",
}


class InstallError(SomnaError, ValueError):
    """A harness configuration cannot be changed safely; nothing was written."""


@dataclass(frozen=True)
class Change:
    """One file's change: old text (None: absent) -> new text (None: delete), or CLI commands to run."""

    path: Path
    old: str | None
    new: str | None
    action: Action
    commands: tuple[tuple[str, ...], ...] = ()
    cwd: Path | None = None

    @property
    def changed(self) -> bool:
        return bool(self.commands) or self.old != self.new

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(self.path.name + BACKUP_SUFFIX)


@dataclass(frozen=True)
class _Target:
    harness: str
    scope: str
    path: Path
    fmt: Literal["json", "jsonc", "toml"]
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
    return _target(harness, scope, home, project, platform, environ or {}).path


def default_command() -> list[str]:
    """How a harness should launch this somna: its console script, else `python -m somna`."""
    name = "somna.exe" if sys.platform == "win32" else "somna"
    sibling = Path(sys.executable).with_name(name)
    if sibling.is_file():
        return [str(sibling.absolute())]
    found = shutil.which("somna")
    return [str(Path(found).absolute())] if found else [sys.executable, "-m", "somna"]


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
    target = _target(harness, scope, home, project, platform, environ or {})
    old = _read(target.path)
    current = _entry_in(target, old)
    owned = _owned(harness, command)
    desired = {**current, **owned} if isinstance(current, dict) else owned
    if current == desired:
        return [Change(target.path, old, old, "installed")]
    action: Action = "add" if current is None else "update"
    if _cli(harness, use_cli):
        commands = [_claude_remove(scope)] if current is not None else []
        commands.append(("claude", "mcp", "add", "--scope", scope, SERVER_NAME, "--", *command, "serve"))
        return [Change(target.path, old, old, action, tuple(commands), project)]
    new = _with_entry(target, old or "", desired)
    expected = _document(target, old) if old is not None and old.strip() else {}
    _set_entry(target, expected, desired)
    _verify(target, new, expected)
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
    target = _target(harness, scope, home, project, platform, environ or {})
    old = _read(target.path)
    current = _entry_in(target, old)
    if old is None or current is None:
        return [Change(target.path, old, old, "absent")]
    if _cli(harness, use_cli):
        return [Change(target.path, old, old, "remove", (_claude_remove(scope),), project)]
    backup = _read(target.path.with_name(target.path.name + BACKUP_SUFFIX))
    if isinstance(current, dict) and backup is not None:
        try:
            if _entry_in(target, backup) is None and _with_entry(target, backup, current) == old:
                return [Change(target.path, old, backup, "restore")]
        except InstallError:
            pass  # a broken backup is not ours to restore
    if isinstance(current, dict) and old == _fresh(target, current):
        return [Change(target.path, old, None, "delete")]
    new = _without_entry(target, old)
    expected = _document(target, old)
    del expected[target.container][SERVER_NAME]
    _verify(target, new, expected)
    return [Change(target.path, old, new, "remove")]


_plan_uninstall = uninstall  # run_install's `uninstall` flag shadows the function


def apply(changes: Iterable[Change], *, dry_run: bool) -> list[str]:
    """Carry out the changes (or only describe them); returns what was done, one line each."""
    lines: list[str] = []
    for change in changes:
        template = _MESSAGES[change.action][0 if dry_run else 1]
        message = template.format(path=change.path, backup=change.backup_path)
        if not change.changed:
            lines.append(message)
            continue
        if dry_run:
            lines.append(message)
            lines.extend(f"  would run: {shlex.join(cmd)}" for cmd in change.commands)
            if not change.commands:
                lines.extend("  " + d for d in _diff(change))
            continue
        if _read(change.path) != change.old:
            raise InstallError(
                f"{change.path} changed while somna was editing it; nothing was written. "
                "Run the command again."
            )
        if change.old is not None and change.action in ("add", "update", "remove"):
            _write(change.backup_path, change.old, like=change.path)
            message += f" (backup: {change.backup_path})"
        lines.append(message)
        for cmd in change.commands:
            _run(cmd, change.cwd)
            lines.append(f"  ran: {shlex.join(cmd)}")
        if change.commands:
            continue
        if change.new is None:
            change.path.unlink()
            parent = change.path.parent
            if parent.name in (".cursor", ".vscode", ".codex", ".claude") and not any(parent.iterdir()):
                parent.rmdir()
        else:
            _write(change.path, change.new, like=change.path)
        if change.action == "restore":
            change.backup_path.unlink()
    return lines


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

    For Claude Code (unless `hooks` is False) also its hooks: SessionStart runs `somna context`, SessionEnd and
    PreCompact run `somna capture`."""
    _check(harness, scope)
    environ: Mapping[str, str] = os.environ if home is None else {}
    use_cli = harness == "claude-code" and home is None and shutil.which("claude") is not None
    home = home if home is not None else Path.home()
    project = project if project is not None else _project_root(Path.cwd())
    if uninstall:
        changes = _plan_uninstall(
            harness, scope, home=home, project=project, use_cli=use_cli, environ=environ
        )
    else:
        changes = plan(
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
    if not uninstall and any(c.changed for c in changes) and (harness, scope) in _NOTES:
        print(_NOTES[(harness, scope)])
    if not uninstall and any(c.changed for c in hook_changes):
        print(
            "Claude Code's hooks: SessionStart runs `somna context` (the core blocks and skills catalog "
            "join each session in full); SessionEnd and PreCompact run `somna capture` (each session's "
            "transcript goes to the store's inbox, secrets redacted, for sleep-time to learn from). "
            "--no-hooks leaves them out."
        )
    return 0


# --- where each harness keeps its servers ----------------------------------------------------------------


def _check(harness: str, scope: str) -> None:
    if harness not in HARNESSES:
        raise InstallError(f"unknown harness {harness!r}; choose one of: {', '.join(HARNESSES)}")
    if scope not in SCOPES:
        raise InstallError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")


def _target(
    harness: str, scope: str, home: Path, project: Path, platform: str, environ: Mapping[str, str]
) -> _Target:
    _check(harness, scope)
    user = scope == "user"
    if harness == "claude-code":
        root = Path(environ["CLAUDE_CONFIG_DIR"]) if environ.get("CLAUDE_CONFIG_DIR", "").strip() else home
        return _Target(
            harness, scope, root / ".claude.json" if user else project / ".mcp.json", "json", "mcpServers"
        )
    if harness == "cursor":
        return _Target(
            harness, scope, (home if user else project) / ".cursor" / "mcp.json", "json", "mcpServers"
        )
    if harness == "codex":
        codex_home = Path(environ["CODEX_HOME"]) if user and environ.get("CODEX_HOME") else None
        folder = codex_home or (home if user else project) / ".codex"
        return _Target(harness, scope, folder / "config.toml", "toml", "mcp_servers")
    if not user:
        return _Target(harness, scope, project / ".vscode" / "mcp.json", "jsonc", "servers")
    if platform == "darwin":
        base = home / "Library" / "Application Support"
    elif platform == "win32":
        base = Path(environ["APPDATA"]) if environ.get("APPDATA") else home / "AppData" / "Roaming"
    else:
        base = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
    return _Target(harness, scope, base / "Code" / "User" / "mcp.json", "jsonc", "servers")


def _owned(harness: str, command: Sequence[str]) -> dict[str, Any]:
    """The keys somna sets in its entry; any other key a user adds to the entry is kept."""
    entry: dict[str, Any] = {"type": "stdio"} if harness in ("claude-code", "vscode") else {}
    return {**entry, "command": command[0], "args": [*command[1:], "serve"]}


def _cli(harness: str, use_cli: bool | None) -> bool:
    if harness != "claude-code":
        return False
    return shutil.which("claude") is not None if use_cli is None else use_cli


def _claude_remove(scope: str) -> tuple[str, ...]:
    return ("claude", "mcp", "remove", "--scope", scope, SERVER_NAME)


def _project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


# --- reading, checking and writing files ------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": keep \r\n as it is
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise InstallError(f"cannot read {path}: {e}") from e


def _write(path: Path, text: str, *, like: Path) -> None:
    """Atomically: a temp file beside the real file (through a symlink), then os.replace; keeps the mode."""
    real = Path(os.path.realpath(path))
    try:
        mode: int | None = os.stat(os.path.realpath(like)).st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = real.with_name(f".{real.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _run(cmd: Sequence[str], cwd: Path | None) -> None:
    try:
        done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise InstallError(f"cannot run {shlex.join(cmd)}: {e}") from e
    if done.returncode != 0:
        raise InstallError(
            f"{shlex.join(cmd)} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
        )


def _diff(change: Change) -> list[str]:
    old = (change.old or "").splitlines()
    new = (change.new or "").splitlines()
    return list(difflib.unified_diff(old, new, f"{change.path} (now)", f"{change.path} (after)", lineterm=""))


def _document(target: _Target, text: str) -> dict[str, Any]:
    """The parsed file; an unparseable one is refused with a message a person can act on."""
    try:
        value = (
            tomllib.loads(text)
            if target.fmt == "toml"
            else _Parser(text, target.fmt == "jsonc").document().value
        )
    except ValueError as e:  # TOMLDecodeError, _SyntaxError, JSONDecodeError of a bad escape
        kind = {"json": "JSON", "jsonc": "JSON (with comments)", "toml": "TOML"}[target.fmt]
        raise InstallError(
            f"{target.path} is not valid {kind} ({e}); somna changed nothing. "
            "Fix or move the file, then run the command again."
        ) from e
    if not isinstance(value, dict):
        raise InstallError(f"{target.path}: the top level is not an object; somna changed nothing.")
    box = value.get(target.container)
    if box is not None and not isinstance(box, dict):
        raise InstallError(
            f"{target.path}: {target.container!r} is not a table of servers; somna changed nothing."
        )
    return value


def _entry_in(target: _Target, text: str | None) -> Any:
    if text is None or not text.strip():
        return None
    return (_document(target, text).get(target.container) or {}).get(SERVER_NAME)


def _set_entry(target: _Target, document: dict[str, Any], entry: dict[str, Any]) -> None:
    document.setdefault(target.container, {})[SERVER_NAME] = entry


def _verify(target: _Target, new: str, expected: dict[str, Any]) -> None:
    """Parse what is about to be written; it must be exactly the old document with somna's entry changed.
    An emptied server table counts as absent: TOML drops the implicit [mcp_servers] with its last table."""

    def normal(document: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in document.items() if not (k == target.container and v == {})}

    try:
        ok = normal(_document(target, new)) == normal(expected)
    except InstallError:
        ok = False
    if not ok:
        raise InstallError(
            f"somna could not edit {target.path} safely (an unusual layout?); nothing was "
            "changed. Add somna's entry by hand, as in examples/ of the somna repository."
        )


def _fresh(target: _Target, entry: dict[str, Any]) -> str:
    if target.fmt == "toml":
        return _toml_block(entry, "\n")
    return json.dumps({target.container: {SERVER_NAME: entry}}, indent=2, ensure_ascii=False) + "\n"


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _with_entry(target: _Target, text: str, entry: dict[str, Any]) -> str:
    """`text` with somna's entry set to `entry`, every other byte kept."""
    if not text.strip():
        return _fresh(target, entry)
    if target.fmt == "toml":
        return _toml_with_entry(text, entry, target.path)
    root = _json_root(target, text)
    nl = _newline(text)
    box = _member(root, target.container, target.path)
    if box is None:
        return _insert(text, root, target.container, {SERVER_NAME: entry}, nl)
    own = _member(box[1], SERVER_NAME, target.path)
    if own is None:
        return _insert(text, box[1], SERVER_NAME, entry, nl)
    indent = _members_indent(text, box[1])
    node = own[1]
    return text[: node.start] + _dump(entry, indent, _indent_unit(text), nl) + text[node.end :]


def _without_entry(target: _Target, text: str) -> str:
    if target.fmt == "toml":
        return _toml_without_entry(text, target.path)
    box = _member(_json_root(target, text), target.container, target.path)
    assert box is not None
    members = box[1].members
    own = _member(box[1], SERVER_NAME, target.path)
    assert own is not None and members is not None
    i, node = own
    if i + 1 < len(members):  # cut "key": value, up to the next key
        return text[: members[i][1]] + text[members[i + 1][1] :]
    if i > 0:  # the last one: cut from the end of the previous value
        return text[: members[i - 1][2].end] + text[node.end :]
    inside = text[box[1].start + 1 : members[i][1]] + re.sub(r"^\s*,", "", text[node.end : box[1].end - 1])
    return text[: box[1].start + 1] + (inside if inside.strip() else "") + text[box[1].end - 1 :]


# --- JSON / JSONC with the offsets of every member, so that an edit can leave the rest alone -------------


class _SyntaxError(ValueError):
    """The text is not valid JSON or JSONC."""


@dataclass
class _Node:
    start: int
    end: int
    value: Any
    members: list[tuple[str, int, _Node]] | None = None  # objects: (key, offset of the key, value)
    elements: list[_Node] | None = None  # arrays: each value


_TOKEN = re.compile(
    r"""(?P<skip>[ \t\r\n]+|//[^\n]*|/\*.*?\*/)|"(?:[^"\\\x00-\x1f]|\\.)*"|[{}\[\]:,]"""
    r"""|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null""",
    re.DOTALL,
)


class _Parser:
    """JSON, or JSONC (comments, trailing commas) when `comments`; keeps the offsets of every value."""

    def __init__(self, text: str, comments: bool) -> None:
        self.text, self.comments, self.i = text, comments, 0
        self.tokens: list[tuple[str, int, int]] = []
        pos = 1 if text.startswith("\ufeff") else 0
        while pos < len(text):
            token = _TOKEN.match(text, pos)
            if token is None or (token.lastgroup == "skip" and not comments and "/" in token.group()):
                self.fail("unexpected character", pos)
            if token.lastgroup != "skip":
                self.tokens.append((token.group(), token.start(), token.end()))
            pos = token.end()

    def document(self) -> _Node:
        node = self.value()
        if self.i < len(self.tokens):
            self.fail("unexpected text after the end")
        return node

    def fail(self, what: str, at: int | None = None) -> NoReturn:
        if at is None:
            at = self.tokens[self.i][1] if self.i < len(self.tokens) else len(self.text)
        column = at - self.text.rfind("\n", 0, at)
        raise _SyntaxError(f"{what} at line {self.text.count(chr(10), 0, at) + 1}, column {column}")

    def peek(self) -> str:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else ""

    def take(self, expected: str = "") -> tuple[str, int, int]:
        if self.i >= len(self.tokens) or (expected and self.peek() != expected):
            self.fail(f"expected {expected!r}" if expected else "expected a value")
        self.i += 1
        return self.tokens[self.i - 1]

    def value(self) -> _Node:
        token, start, end = self.take()
        if token in "}]:,":
            self.i -= 1
            self.fail("expected a value")
        if token not in "{[":
            return _Node(start, end, json.loads(token))
        close = "}" if token == "{" else "]"
        elements: list[_Node] = []
        members: list[tuple[str, int, _Node]] = []
        while self.peek() != close:
            if close == "}":
                if not self.peek().startswith('"'):
                    self.fail("expected a property name")
                key, key_start, _ = self.take()
                self.take(":")
                members.append((json.loads(key), key_start, self.value()))
            else:
                elements.append(self.value())
            if self.peek() != ",":
                break
            self.take(",")
            if self.peek() == close and not self.comments:
                self.fail("trailing comma")
        stop = self.take(close)[2]
        if close == "]":
            return _Node(start, stop, [e.value for e in elements], elements=elements)
        return _Node(start, stop, {k: n.value for k, _, n in members}, members)


def _json_root(target: _Target, text: str) -> _Node:
    _document(target, text)  # refuses what cannot be parsed, with the message
    return _Parser(text, target.fmt == "jsonc").document()


def _member(node: _Node, key: str, path: Path) -> tuple[int, _Node] | None:
    found = [(i, n) for i, (k, _, n) in enumerate(node.members or []) if k == key]
    if len(found) > 1:
        raise InstallError(f"{path}: the key {key!r} appears more than once; somna changed nothing.")
    return found[0] if found else None


def _line_indent(text: str, offset: int) -> str:
    line = text[text.rfind("\n", 0, offset) + 1 : offset]
    return line[: len(line) - len(line.lstrip(" \t"))]


def _indent_unit(text: str) -> str:
    found = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    return found.group(1) if found else "  "


def _members_indent(text: str, obj: _Node) -> str | None:
    """The indentation of the object's members; None when they share a line (compact layout)."""
    if not obj.members:
        return _line_indent(text, obj.start) + _indent_unit(text)
    first = obj.members[0][1]
    before = text[text.rfind("\n", 0, first) + 1 : first]
    return before if not before.strip() else None


def _dump(value: Any, indent: str | None, unit: str, nl: str) -> str:
    if indent is None:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, indent=unit, ensure_ascii=False).replace("\n", nl + indent)


def _insert(text: str, obj: _Node, key: str, value: Any, nl: str) -> str:
    indent, unit = _members_indent(text, obj), _indent_unit(text)
    member = f"{json.dumps(key, ensure_ascii=False)}: {_dump(value, indent, unit, nl)}"
    if obj.members:
        end = obj.members[-1][2].end
        return text[:end] + (f", {member}" if indent is None else f",{nl}{indent}{member}") + text[end:]
    if text[obj.start + 1 : obj.end - 1].strip():  # only comments inside: keep them after the member
        return text[: obj.start + 1] + f"{nl}{indent}{member}" + text[obj.start + 1 :]
    return (
        text[: obj.start + 1]
        + f"{nl}{indent}{member}{nl}{_line_indent(text, obj.start)}"
        + text[obj.end - 1 :]
    )


# --- TOML: somna's [mcp_servers.somna] table is cut out or written as text; the rest is left alone --------

_HEADER = re.compile(r"[ \t]*\[\[?([^\[\]]+)\]\]?[ \t]*(?:#.*)?(?:\r?\n)?")
_KEY_PART = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|$)""")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(raw: str) -> tuple[str, ...]:
    parts: list[str] = []
    pos = 0
    while pos < len(raw):
        part = _KEY_PART.match(raw, pos)
        if part is None or part.end() == pos:
            return ()
        token = part.group(1)
        try:
            parts.append(json.loads(token) if token.startswith('"') else token.strip("'"))
        except ValueError:
            return ()
        pos = part.end()
    return tuple(parts)


def _open_quote(line: str, quote: str) -> str:
    """The multi-line string delimiter still open after `line` ("" when none), given the one open before."""
    i = 0
    while True:
        if quote:
            end = line.find(quote, i)
            if end < 0:
                return quote
            quote, i = "", end + 3
        else:
            hits = [(at, q) for q in ('"""', "'''") if (at := line.find(q, i)) >= 0]
            if not hits:
                return ""
            at, quote = min(hits)
            i = at + 3


def _toml_region(text: str, path: Path) -> tuple[int, int] | None:
    """Where [mcp_servers.somna] and its sub-tables are, without the blank or comment lines after them."""
    headers: list[tuple[int, tuple[str, ...]]] = []
    pos, quote = 0, ""
    for line in text.splitlines(keepends=True):
        header = _HEADER.fullmatch(line) if not quote else None
        if header:
            headers.append((pos, _toml_key(header.group(1))))
        quote = _open_quote(line, quote)
        pos += len(line)
    mine = [i for i, (_, key) in enumerate(headers) if key[:2] == ("mcp_servers", SERVER_NAME)]
    if not mine:
        return None
    if mine != list(range(mine[0], mine[-1] + 1)):
        raise InstallError(f"{path}: somna's tables are split across the file; edit it by hand.")
    start = headers[mine[0]][0]
    stop = headers[mine[-1] + 1][0] if mine[-1] + 1 < len(headers) else len(text)
    lines = text[start:stop].splitlines(keepends=True)
    while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    return start, start + sum(len(line) for line in lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{_toml_name(k)} = {_toml_value(v)}" for k, v in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"
    raise InstallError(
        f"somna cannot write a {type(value).__name__} value into TOML; edit the entry by hand."
    )


def _toml_name(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_block(entry: dict[str, Any], nl: str) -> str:
    lines = [
        f"[mcp_servers.{SERVER_NAME}]",
        *(f"{_toml_name(k)} = {_toml_value(v)}" for k, v in entry.items()),
    ]
    return nl.join(lines) + nl


def _toml_with_entry(text: str, entry: dict[str, Any], path: Path) -> str:
    nl = _newline(text)
    try:
        block = _toml_block(entry, nl)
    except InstallError as e:
        raise InstallError(f"{path}: {e}") from e
    region = _toml_region(text, path)
    if region is not None:
        return text[: region[0]] + block + text[region[1] :]
    if SERVER_NAME in (tomllib.loads(text).get("mcp_servers") or {}):
        raise InstallError(f"{path}: somna's entry is not a [mcp_servers.somna] table; edit it by hand.")
    return text + ("" if text.endswith("\n") else nl) + nl + block


def _toml_without_entry(text: str, path: Path) -> str:
    region = _toml_region(text, path)
    if region is None:
        raise InstallError(f"{path}: somna's entry is not a [mcp_servers.somna] table; edit it by hand.")
    before, after = text[: region[0]], text[region[1] :]
    nl = _newline(text)
    if not after and before.endswith(nl * 2):
        before = before[: -len(nl)]
    return before + after


# --- Claude Code hooks: SessionStart runs `somna context`; SessionEnd, PreCompact `somna capture` -----------

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
    _check("claude-code", scope)
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
    handlers = group.get("hooks") if isinstance(group, dict) else None
    return isinstance(handlers, list) and any(
        isinstance(h, dict) and isinstance(h.get("command"), str) and _HOOK_MARK.search(h["command"])
        for h in handlers
    )


def _hook_lists(target: _Target, document: dict[str, Any]) -> dict[str, list[Any]]:
    """Each of somna's events -> its list of matcher groups (refuses shapes somna would have to guess at)."""
    events = document.get("hooks") or {}
    out: dict[str, list[Any]] = {}
    for event in HOOK_EVENTS:
        groups = events.get(event, [])
        if not isinstance(groups, list):
            raise InstallError(f"{target.path}: hooks.{event} is not a list; somna changed nothing.")
        if sum(_ours(g) for g in groups) > 1:
            raise InstallError(f"{target.path}: somna's {event} hook is there twice; edit the file by hand.")
        out[event] = groups
    return out


def _hooks_target(scope: str, home: Path, project: Path, environ: Mapping[str, str]) -> _Target:
    return _Target(
        "claude-code",
        scope,
        settings_path(scope, home=home, project=project, environ=environ),
        "json",
        "hooks",
    )


def _set_group(target: _Target, text: str, event: str, group: dict[str, Any]) -> str:
    """`text` with somna's group in hooks.<event> set to `group` (appended when absent); the rest kept."""
    if not text.strip():
        return json.dumps({"hooks": {event: [group]}}, indent=2, ensure_ascii=False) + "\n"
    nl, unit = _newline(text), _indent_unit(text)
    root = _json_root(target, text)
    box = _member(root, "hooks", target.path)
    if box is None:
        return _insert(text, root, "hooks", {event: [group]}, nl)
    found = _member(box[1], event, target.path)
    if found is None:
        return _insert(text, box[1], event, [group], nl)
    array = found[1]
    elements = array.elements or []
    mine = [e for e in elements if _ours(e.value)]
    if mine:
        indent = _line_indent(text, mine[0].start)
        if text[text.rfind("\n", 0, mine[0].start) + 1 : mine[0].start].strip():
            indent = None  # it shares its line with something else: keep it on one line
        return text[: mine[0].start] + _dump(group, indent, unit, nl) + text[mine[0].end :]
    if not elements:
        outer = _line_indent(text, array.start)
        member = _dump(group, outer + unit, unit, nl)
        return text[: array.start + 1] + f"{nl}{outer}{unit}{member}{nl}{outer}" + text[array.end - 1 :]
    last = elements[-1]
    before = text[text.rfind("\n", 0, last.start) + 1 : last.start]
    if before.strip():  # compact: [{...}, {...}]
        return text[: last.end] + ", " + _dump(group, None, unit, nl) + text[last.end :]
    return text[: last.end] + f",{nl}{before}{_dump(group, before, unit, nl)}" + text[last.end :]


def _cut_member(text: str, obj: _Node, key: str, path: Path) -> str:
    members = obj.members or []
    found = _member(obj, key, path)
    assert found is not None
    i, node = found
    if i + 1 < len(members):
        return text[: members[i][1]] + text[members[i + 1][1] :]
    if i > 0:
        return text[: members[i - 1][2].end] + text[node.end :]
    inside = text[obj.start + 1 : members[i][1]] + re.sub(r"^\s*,", "", text[node.end : obj.end - 1])
    return text[: obj.start + 1] + (inside if inside.strip() else "") + text[obj.end - 1 :]


def _cut_group(target: _Target, text: str, event: str) -> str:
    """`text` without somna's group in hooks.<event>; an emptied list, and an emptied hooks, go too."""
    root = _json_root(target, text)
    box = _member(root, "hooks", target.path)
    assert box is not None
    found = _member(box[1], event, target.path)
    assert found is not None
    elements = found[1].elements or []
    i = next(k for k, e in enumerate(elements) if _ours(e.value))
    if len(elements) > 1:
        if i + 1 < len(elements):
            return text[: elements[i].start] + text[elements[i + 1].start :]
        return text[: elements[i - 1].end] + text[elements[i].end :]
    text = _cut_member(text, box[1], event, target.path)
    root = _json_root(target, text)
    box = _member(root, "hooks", target.path)
    if box is not None and not box[1].members:
        text = _cut_member(text, root, "hooks", target.path)
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
    target = _hooks_target(scope, home, project, environ or {})
    old = _read(target.path)
    document = _document(target, old) if old is not None and old.strip() else {}
    lists = _hook_lists(target, document)
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
            document.setdefault("hooks", {}).setdefault(event, []).append(group)
    if new == (old or ""):
        return [Change(target.path, old, old, "installed")]
    _verify(target, new, document)
    return [Change(target.path, old, new, "update" if had else "add")]


def uninstall_hooks(
    scope: str, *, home: Path, project: Path, environ: Mapping[str, str] | None = None
) -> list[Change]:
    """What taking somna's hooks out would change: a file somna created goes, a backup that only lacks
    somna's hooks comes back byte for byte, and otherwise just somna's groups are cut out."""
    target = _hooks_target(scope, home, project, environ or {})
    old = _read(target.path)
    if old is None or not old.strip():
        return [Change(target.path, old, old, "absent")]
    document = _document(target, old)
    lists = _hook_lists(target, document)
    mine = {event: g for event, groups in lists.items() for g in groups if _ours(g)}
    if not mine:
        return [Change(target.path, old, old, "absent")]

    def with_mine(text: str) -> str:
        for event, group in mine.items():
            text = _set_group(target, text, event, group)
        return text

    backup = _read(target.path.with_name(target.path.name + BACKUP_SUFFIX))
    if backup is not None:
        try:
            before = _hook_lists(target, _document(target, backup)) if backup.strip() else {}
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
            document["hooks"][event] = groups
        else:
            del document["hooks"][event]
    if not document.get("hooks"):
        document.pop("hooks", None)
    _verify(target, new, document)
    return [Change(target.path, old, new, "remove")]
