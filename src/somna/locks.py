"""File locks between processes (flock), with a timeout, and the store lock built on them.

One helper for every lock somna takes on a file: the store lock (one writer at a time across processes),
the capture lock, the daemon's lock. flock is released by the kernel when a process dies, so a kill -9
never leaves a store locked.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from somna.errors import StoreBusy, StoreNotFound

POLL = 0.005  # seconds between two tries: a store lock is held for milliseconds


@contextmanager
def file_lock(path: Path, timeout: float, *, poll: float = POLL) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created 0600); yields False if it could not be had in `timeout`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    got = False
                    break
                time.sleep(poll)
        yield got
    finally:
        os.close(fd)


def try_lock(path: Path) -> int | None:
    """Take an exclusive flock on `path` at once and keep it: the open descriptor, or None if it is held.
    The lock lasts until the descriptor is closed (or the process ends)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class StoreLock:
    """One writer at a time across threads and processes; re-entrant within the thread that holds it."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._thread_lock = threading.RLock()
        self._held = False

    @contextmanager
    def __call__(self, timeout: float = 60.0) -> Iterator[None]:
        with self._thread_lock:
            if self._held:
                yield
                return
            if not self.path.parent.parent.is_dir():  # the store (the lock is in its .somna/) moved or
                # deleted under a running server: writing on would rebuild a ghost of it at the old path,
                # with the note lost to the real one (a .somna/ removed by hand is simply made again)
                raise StoreNotFound(
                    f"the store {self.name} is gone from where somna opened it (moved or deleted?); "
                    "nothing was written: start somna again where the store is now"
                )
            with file_lock(self.path, timeout) as got:
                if not got:
                    raise StoreBusy(f"the store {self.name} is locked by another process")
                self._held = True
                try:
                    yield
                finally:
                    self._held = False
