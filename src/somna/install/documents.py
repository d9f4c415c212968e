"""A harness file read as data: parsed (an unparseable file is refused with a message a person can act on),
and each edit checked by parsing its result before anything is written."""

from __future__ import annotations

import tomllib
from typing import Any

from somna.install import jsonc
from somna.install.changes import InstallError
from somna.install.harnesses import Target


def document(target: Target, text: str) -> dict[str, Any]:
    """The parsed file; an unparseable one is refused with a message a person can act on."""
    try:
        if target.syntax == "toml":
            value = tomllib.loads(text)
        else:
            value = jsonc.parse(text, target.syntax == "jsonc").value
    except ValueError as e:  # TOMLDecodeError, the JSONC parser's own error, JSONDecodeError of a bad escape
        kind = {"json": "JSON", "jsonc": "JSON (with comments)", "toml": "TOML"}[target.syntax]
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


def json_root(target: Target, text: str) -> jsonc.Node:
    """The JSON(C) file with the offsets of every value, for a textual edit."""
    document(target, text)  # refuses what cannot be parsed, with the message
    return jsonc.parse(text, target.syntax == "jsonc")


def verify(target: Target, new: str, expected: dict[str, Any]) -> None:
    """Parse what is about to be written; it must be exactly the old document with somna's entry changed.
    An emptied server table counts as absent: TOML drops the implicit [mcp_servers] with its last table."""

    def normal(parsed: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in parsed.items() if not (k == target.container and v == {})}

    try:
        ok = normal(document(target, new)) == normal(expected)
    except InstallError:
        ok = False
    if not ok:
        raise InstallError(
            f"somna could not edit {target.path} safely (an unusual layout?); nothing was "
            "changed. Add somna's entry by hand, as in examples/ of the somna repository."
        )
