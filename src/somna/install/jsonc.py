"""JSON and JSONC (comments, trailing commas) with the offsets of every value, so that an edit can change
one member and leave every other byte of a person's file alone: its comments, order and layout."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from somna.install.changes import InstallError


class _SyntaxError(ValueError):
    """The text is not valid JSON or JSONC."""


@dataclass
class Node:
    start: int
    end: int
    value: Any
    members: list[tuple[str, int, Node]] | None = None  # objects: (key, offset of the key, value)
    elements: list[Node] | None = None  # arrays: each value


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

    def document(self) -> Node:
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

    def value(self) -> Node:
        token, start, end = self.take()
        if token in "}]:,":
            self.i -= 1
            self.fail("expected a value")
        if token not in "{[":
            return Node(start, end, json.loads(token))
        close = "}" if token == "{" else "]"
        elements: list[Node] = []
        members: list[tuple[str, int, Node]] = []
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
            return Node(start, stop, [e.value for e in elements], elements=elements)
        return Node(start, stop, {k: n.value for k, _, n in members}, members)


def parse(text: str, comments: bool) -> Node:
    """The text's value with the offsets of every member and element; ValueError when it is not valid."""
    return _Parser(text, comments).document()


def member(node: Node, key: str, path: Path) -> tuple[int, Node] | None:
    """The object's member `key` as (its place, its value); a key twice is refused, as somna cannot tell
    which one the harness reads."""
    found = [(i, n) for i, (k, _, n) in enumerate(node.members or []) if k == key]
    if len(found) > 1:
        raise InstallError(f"{path}: the key {key!r} appears more than once; somna changed nothing.")
    return found[0] if found else None


def line_indent(text: str, offset: int) -> str:
    """The whitespace that starts the line `offset` is on."""
    line = text[text.rfind("\n", 0, offset) + 1 : offset]
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_unit(text: str) -> str:
    """One level of the file's own indentation (two spaces when the file shows none)."""
    found = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    return found.group(1) if found else "  "


def members_indent(text: str, obj: Node) -> str | None:
    """The indentation of the object's members; None when they share a line (compact layout)."""
    if not obj.members:
        return line_indent(text, obj.start) + indent_unit(text)
    first = obj.members[0][1]
    before = text[text.rfind("\n", 0, first) + 1 : first]
    return before if not before.strip() else None


def dump(value: Any, indent: str | None, unit: str, line_end: str) -> str:
    """`value` as JSON laid out like its neighbours: one line when `indent` is None, else indented."""
    if indent is None:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, indent=unit, ensure_ascii=False).replace("\n", line_end + indent)


def insert(text: str, obj: Node, key: str, value: Any, line_end: str) -> str:
    """`text` with `"key": value` added as the object's last member, laid out like the others."""
    indent, unit = members_indent(text, obj), indent_unit(text)
    added = f"{json.dumps(key, ensure_ascii=False)}: {dump(value, indent, unit, line_end)}"
    if obj.members:
        end = obj.members[-1][2].end
        return text[:end] + (f", {added}" if indent is None else f",{line_end}{indent}{added}") + text[end:]
    if text[obj.start + 1 : obj.end - 1].strip():  # only comments inside: keep them after the member
        return text[: obj.start + 1] + f"{line_end}{indent}{added}" + text[obj.start + 1 :]
    return (
        text[: obj.start + 1]
        + f"{line_end}{indent}{added}{line_end}{line_indent(text, obj.start)}"
        + text[obj.end - 1 :]
    )


def cut_member(text: str, obj: Node, key: str, path: Path) -> str:
    """`text` without the object's member `key` (which must be there) and the comma that joined it."""
    members = obj.members or []
    found = member(obj, key, path)
    assert found is not None
    i, node = found
    if i + 1 < len(members):  # cut "key": value, up to the next key
        return text[: members[i][1]] + text[members[i + 1][1] :]
    if i > 0:  # the last one: cut from the end of the previous value
        return text[: members[i - 1][2].end] + text[node.end :]
    inside = text[obj.start + 1 : members[i][1]] + re.sub(r"^\s*,", "", text[node.end : obj.end - 1])
    return text[: obj.start + 1] + (inside if inside.strip() else "") + text[obj.end - 1 :]
