"""All or nothing over several commits: an operation that applies its changes in parts.

A sleep cycle applies its plan in parts, one commit each, letting go of the store lock in between so
that agents can write. If its process dies in the middle (a kill -9, a power cut), half a plan would be
in the store and, worse, the files of the part it was writing would be committed by the next sync as a
`human` edit. So the operation says what it starts here first (`.somna/intent.json`, with the commit it
starts from) and holds a lock on `.somna/intent.lock` while it runs. The next sync of the store that
finds the intent with nobody holding its lock undoes the operation before it commits anything:

- its uncommitted files (changed since it started) are copied to `.somna/recovered/` and put back as
  HEAD has them; files it created are moved there;
- its commits since the start (by its author) are reverted, in one commit by `somna`.

What cannot be undone cleanly (a person edited the same note after the operation's commit) is left as
it is, and `.somna/intent-failed.json` says so for `somna status`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from somna import history, notes
from somna.errors import SomnaError, StoreBusy
from somna.locks import try_lock

log = logging.getLogger("somna.intents")
UNDOER = "somna <somna@somna.local>"


class Intents:
    """The intent of one store (there is at most one operation of this kind at a time)."""

    def __init__(
        self, root: Path, somna_dir: Path, tracked: tuple[str, ...], recovered: Callable[[], Path]
    ) -> None:
        self.root = root
        self.file = somna_dir / "intent.json"
        self.lock = somna_dir / "intent.lock"
        self.failed = somna_dir / "intent-failed.json"
        self.undone = somna_dir / "intent-undone.json"  # the last undo, for `somna status`
        self.tracked = tracked
        self.recovered = recovered

    @contextmanager
    def hold(self, name: str, author: str) -> Iterator[None]:
        """Changes made inside, in as many commits as they take, are undone together by the next sync if
        this process dies (or raises) before the end."""
        fd = try_lock(self.lock)
        if fd is None:
            raise StoreBusy(f"another {name} is being applied to {self.root}")
        try:
            data = {
                "name": name,
                "author": author,
                "base": history.head(self.root),
                "pid": os.getpid(),
                "started": time.time(),
                "since": notes.now_iso(),
            }
            notes.atomic_write(self.file, json.dumps(data))
            yield
            self.file.unlink(missing_ok=True)  # reached the end: nothing to undo
        finally:
            os.close(fd)

    def pending(self) -> dict[str, Any] | None:
        """The intent of an operation whose process has gone, if there is one."""
        if not self.file.exists():
            return None
        fd = try_lock(self.lock)
        if fd is None:
            return None  # its process is still at it
        os.close(fd)
        return self._read()

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            data = {}
        return data if isinstance(data, dict) else {}

    def undo(self) -> dict[str, Any] | None:
        """Undo an interrupted operation (the caller holds the store lock). What was done, or None."""
        if not self.file.exists():
            return None
        fd = try_lock(self.lock)
        if fd is None:
            return None
        try:
            data = self._read()
            if data is None:
                return None
            done = self._undo(data)
            if not done.get("error"):
                record = {"name": done.get("name"), "at": notes.now_iso(), "started": data.get("started"),
                          "reverted": len(done["reverted"]), "restored": len(done["restored"])}  # fmt: skip
                notes.atomic_write(self.undone, json.dumps(record))
            self.file.unlink(missing_ok=True)
            log.warning("undid the interrupted %s: %s", data.get("name", "operation"), done)
            return done
        finally:
            os.close(fd)

    def _undo(self, data: dict[str, Any]) -> dict[str, Any]:
        base, author = data.get("base"), str(data.get("author") or "")
        started = float(data.get("started") or 0)
        history.clear_stale_lock(self.root)  # the operation may have died inside git, holding its locks
        aside = self.recovered()
        restored: list[str] = []
        for rel in history.dirty_paths(self.root, *self.tracked):
            path = self.root / rel
            try:
                st = path.lstat()
            except FileNotFoundError:  # deleted by the operation: git has it
                history.git(self.root, "checkout", "HEAD", "--", rel, check=False)
                restored.append(rel)
                continue
            if st.st_mtime < started - 1:
                continue  # a hand edit from before the operation: the sync commits it as such
            (aside / rel).parent.mkdir(parents=True, exist_ok=True)
            if history.tracked(self.root, [rel]):
                shutil.copy2(path, aside / rel)
                history.git(self.root, "checkout", "HEAD", "--", rel, check=False)
            else:
                os.replace(path, aside / rel)
            restored.append(rel)
        for sub in self.tracked:  # the temp file of the write it was killed in (an atomic write's)
            base_dir = self.root / sub
            for tmp in base_dir.rglob(".tmp-*") if base_dir.is_dir() else []:
                if tmp.is_file() and tmp.stat().st_mtime >= started - 1:
                    rel = tmp.relative_to(self.root).as_posix()
                    (aside / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, aside / rel)
                    restored.append(rel)
        out: dict[str, Any] = {"name": data.get("name"), "restored": restored, "reverted": []}
        if not base or not author:
            return out
        shas = history.git(
            self.root, "rev-list", f"--author=^{author} <", f"{base}..HEAD", check=False
        ).split()
        if not shas:
            return out
        try:
            history.git(self.root, "revert", "--no-edit", "--no-commit", *shas)  # staged, all of it
            message = (
                f"undo the interrupted {data.get('name', 'operation')} (its process ended before the end): "
                f"{len(shas)} commit(s) since {str(base)[:12]}"
            )
            history.git(self.root, "commit", "-q", "--no-verify", "-m", message, f"--author={UNDOER}")
            out["reverted"] = shas
        except SomnaError as exc:
            history.git(self.root, "revert", "--abort", check=False)
            history.git(self.root, "reset", "-q", check=False)
            failed = data | {"error": str(exc)[:500], "commits": shas, "at": notes.now_iso()}
            notes.atomic_write(self.failed, json.dumps(failed))
            out["error"] = str(exc)
        return out
