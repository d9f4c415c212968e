"""TOML editing that keeps a person's comments: somna's [mcp_servers.somna] table is written or cut out as
text, and every other byte of the file is left alone (tomllib only reads, so the file is never re-dumped)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from somna.install.changes import InstallError, newline
from somna.install.harnesses import SERVER_NAME

_HEADER = re.compile(r"[ \t]*\[\[?([^\[\]]+)\]\]?[ \t]*(?:#.*)?(?:\r?\n)?")
_KEY_PART = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|$)""")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(raw: str) -> tuple[str, ...]:
    """A table header's dotted key as its parts (quoted parts unquoted); () when somna cannot read it."""
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


def _region(text: str, path: Path) -> tuple[int, int] | None:
    """Where [mcp_servers.somna] and its sub-tables are, without the blank or comment lines after them."""
    headers: list[tuple[int, tuple[str, ...]]] = []
    pos, quote = 0, ""
    for line in text.splitlines(keepends=True):
        header = _HEADER.fullmatch(line) if not quote else None
        if header:
            headers.append((pos, _key(header.group(1))))
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


def _value(value: Any) -> str:
    """A TOML value on one line (arrays and inline tables too), as somna writes its own entry."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{_name(k)} = {_value(v)}" for k, v in value.items())
        return f"{{ {pairs} }}" if pairs else "{}"
    raise InstallError(
        f"somna cannot write a {type(value).__name__} value into TOML; edit the entry by hand."
    )


def _name(key: str) -> str:
    """A key bare when TOML allows it, else quoted."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def table(entry: dict[str, Any], line_end: str) -> str:
    """somna's [mcp_servers.somna] table as text, each line ending in `line_end`."""
    lines = [
        f"[mcp_servers.{SERVER_NAME}]",
        *(f"{_name(k)} = {_value(v)}" for k, v in entry.items()),
    ]
    return line_end.join(lines) + line_end


def with_entry(text: str, entry: dict[str, Any], path: Path) -> str:
    """`text` with somna's table replaced by, or else followed by, one holding `entry`."""
    line_end = newline(text)
    try:
        block = table(entry, line_end)
    except InstallError as e:
        raise InstallError(f"{path}: {e}") from e
    region = _region(text, path)
    if region is not None:
        return text[: region[0]] + block + text[region[1] :]
    if SERVER_NAME in (tomllib.loads(text).get("mcp_servers") or {}):
        raise InstallError(f"{path}: somna's entry is not a [mcp_servers.somna] table; edit it by hand.")
    return text + ("" if text.endswith("\n") else line_end) + line_end + block


def without_entry(text: str, path: Path) -> str:
    """`text` without somna's table and its sub-tables (a blank line it leaves at the end goes too)."""
    region = _region(text, path)
    if region is None:
        raise InstallError(f"{path}: somna's entry is not a [mcp_servers.somna] table; edit it by hand.")
    before, after = text[: region[0]], text[region[1] :]
    line_end = newline(text)
    if not after and before.endswith(line_end * 2):
        before = before[: -len(line_end)]
    return before + after
