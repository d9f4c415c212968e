"""The group-commit journal: a write's commit recorded now, made together with the writes around it.

A write is on disk (flushed) and indexed before it returns, as always; with group commits on (the server),
its commit is recorded in state.db's `pending_commits` and made by a background thread together with the
writes around it, one commit per author. git was most of a write's time. Whoever next reads history,
syncs, runs sleep-time or closes the store commits the journal first, in any process; a process killed
before its commit leaves the journal for the next one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from somna import history
from somna.db import Connection, connect, transaction

log = logging.getLogger("somna.journal")

WINDOW = 0.2  # seconds a deferred commit waits for the writes around it


class Journal:
    """Deferred commits of one store, shared by every process through state.db."""

    def __init__(
        self, root: Path, state_db: Path, conn: Connection, lock: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self.root = root
        self.state_db = state_db
        self.conn = conn  # the index connection, with state.db attached as `state`
        self.lock = lock
        self._due: threading.Event | None = None  # set: group commits on, and a commit is due
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def on(self) -> bool:
        return self._due is not None

    def start(self, window: float = WINDOW) -> None:
        """Commit this process's writes in groups, at most `window` seconds after they land."""
        if self._thread is not None:
            return
        due = self._due = threading.Event()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                due.wait()
                if self._stop.is_set():
                    return
                self._stop.wait(window)  # let the writes around this one join it
                due.clear()
                try:
                    self.flush()
                except Exception as exc:
                    log.warning("group commit failed; it stays in the journal and is retried: %s", exc)
                    self._stop.wait(1.0)
                    due.set()

        self._thread = threading.Thread(target=loop, name="somna-group-commit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            assert self._due is not None
            self._due.set()
            self._thread.join(timeout=30)
            self._thread = None

    def record(self, paths: list[str], message: str, author: str) -> None:
        """Defer the commit of `paths` to the group-commit thread."""
        assert self._due is not None, "group commits are not on"
        with transaction(self.conn) as conn:
            conn.execute(
                "INSERT INTO state.pending_commits (paths, message, author) VALUES (?, ?, ?)",
                (json.dumps(paths), message, author),
            )
        self._due.set()

    def pending(self) -> list[str]:
        """Files whose commit is deferred and not made yet."""
        rows = self.conn.execute("SELECT paths FROM state.pending_commits").fetchall()
        return sorted({p for (paths,) in rows for p in json.loads(paths)})

    def settle(self, *paths: str) -> None:
        """Commit a file's deferred change before it changes again, so that history keeps every version."""
        if any(p in self.pending() for p in paths):
            self.flush()

    def flush(self) -> int:
        """Make the commits the journal holds, grouped by author; returns how many were made."""
        if not self.state_db.exists():
            return 0
        with self.lock():
            conn = connect(self.state_db, vec=False)
            try:
                rows = conn.execute(
                    "SELECT n, paths, message, author FROM pending_commits ORDER BY n"
                ).fetchall()
                if not rows:
                    return 0
                made = self._commit_groups([(json.loads(p), m, a) for _, p, m, a in rows])
                with transaction(conn):
                    conn.execute("DELETE FROM pending_commits WHERE n <= ?", (rows[-1][0],))
                return made
            finally:
                conn.close()

    def _commit_groups(self, writes: list[tuple[list[str], str, str]]) -> int:
        # consecutive writes of one author: (author, every path, [(a write's paths, its message)])
        groups: list[tuple[str, list[str], list[tuple[list[str], str]]]] = []
        for paths, message, author in writes:
            if not groups or groups[-1][0] != author:
                groups.append((author, [], []))
            groups[-1][1].extend(paths)
            groups[-1][2].append((paths, message))
        # A file changed by two authors inside one window holds the second change only: it is committed
        # with the last author who changed it.
        last = {p: i for i, (_, paths, _) in enumerate(groups) for p in paths}
        # A file written and then deleted by hand before its commit was never in git: nothing to commit
        # for it (and `git add` would refuse the whole group).
        gone = [p for p in last if not (self.root / p).exists()]
        known = set(history.tracked(self.root, gone)) if gone else set()
        made = 0
        for i, (author, paths, group) in enumerate(groups):
            mine = sorted({p for p in paths if last[p] == i and (p not in gone or p in known)})
            if not mine:
                continue
            # the message names the writes whose files this commit holds, not one deleted meanwhile
            messages = [m for ps, m in group if set(ps) & set(mine)] or [m for _, m in group]
            message = (
                messages[0]
                if len(messages) == 1
                else f"{len(messages)} changes by {author}\n\n" + "\n".join(f"- {m}" for m in messages)
            )
            if history.commit(self.root, mine, message, author):
                made += 1
        return made
