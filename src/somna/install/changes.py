"""A change to one harness file, and carrying it out: reading and writing the file, or running a CLI.

A Change holds the old text and the new one; apply() writes it only when the file still holds the old text,
keeps a backup of what it replaces, and keeps the file's mode, line endings and symlink.
"""

from __future__ import annotations

import difflib
import os
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from somna.errors import SomnaError
from somna.notes import atomic_write

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
# Folders somna may have created for a file of its own; an emptied one goes with the file.
_HARNESS_FOLDERS = (".cursor", ".vscode", ".codex", ".claude")


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
        return backup_of(self.path)


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


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
            lines.extend(f"  would run: {shlex.join(command)}" for command in change.commands)
            if not change.commands:
                lines.extend("  " + line for line in _diff(change))
            continue
        if read(change.path) != change.old:
            raise InstallError(
                f"{change.path} changed while somna was editing it; nothing was written. "
                "Run the command again."
            )
        if change.old is not None and change.action in ("add", "update", "remove"):
            _write(change.backup_path, change.old, like=change.path)
            message += f" (backup: {change.backup_path})"
        lines.append(message)
        for command in change.commands:
            _run(command, change.cwd)
            lines.append(f"  ran: {shlex.join(command)}")
        if change.commands:
            continue
        if change.new is None:
            change.path.unlink()
            parent = change.path.parent
            if parent.name in _HARNESS_FOLDERS and not any(parent.iterdir()):
                parent.rmdir()
        else:
            _write(change.path, change.new, like=change.path)
        if change.action == "restore":
            change.backup_path.unlink()
    return lines


def read(path: Path) -> str | None:
    """The file's text exactly as it is (None: no such file)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:  # newline="": keep \r\n as it is
            return f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise InstallError(f"cannot read {path}: {e}") from e


def newline(text: str) -> str:
    """The line ending the file uses, so that what somna adds matches it."""
    return "\r\n" if "\r\n" in text else "\n"


def _write(path: Path, text: str, *, like: Path) -> None:
    """Atomically, where a symlink points, with the mode of `like` (a new file: what the umask allows)."""
    real = Path(os.path.realpath(path))  # replacing the symlink itself would cut it from its target
    try:
        mode = os.stat(os.path.realpath(like)).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    atomic_write(real, text, mode=mode)


def _umask() -> int:
    # Reading the umask means setting it; install runs as a one-off command, with no thread to race.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _run(command: Sequence[str], cwd: Path | None) -> None:
    try:
        done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise InstallError(f"cannot run {shlex.join(command)}: {e}") from e
    if done.returncode != 0:
        raise InstallError(
            f"{shlex.join(command)} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
        )


def _diff(change: Change) -> list[str]:
    old = (change.old or "").splitlines()
    new = (change.new or "").splitlines()
    return list(difflib.unified_diff(old, new, f"{change.path} (now)", f"{change.path} (after)", lineterm=""))
