"""Progress of long operations (reindex, import, export, the first model load), for a person at a terminal.

Written to stderr, and only when stderr is a terminal: never on stdout (the MCP wire in stdio mode), never
into a harness's log or a pipe.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from somna.embeddings import Embedder

if TYPE_CHECKING:
    from somna.indexer import SyncReport
    from somna.store import Store


def _tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """`label: n/total (p%)` on one line, redrawn at most ten times a second; `done()` ends the line."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _tty(self.stream) if enabled is None else enabled
        self.label, self.total, self.n = label, total, 0
        self.started = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def _draw(self, text: str, *, end: str = "") -> None:
        if self.enabled:
            self.stream.write(f"\r{text}\x1b[K{end}")
            self.stream.flush()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            now = time.monotonic()
            if now - self._last < 0.1 and (self.total is None or self.n < self.total):
                return
            self._last = now
            count = (
                f"{self.n}/{self.total} ({100 * self.n // max(self.total, 1)}%)"
                if self.total
                else str(self.n)
            )
            self._draw(f"{self.label}: {count}")

    def done(self, message: str | None = None) -> None:
        took = time.monotonic() - self.started
        self._draw(f"{self.label}: {message or 'done'} ({took:.1f} s)", end="\n")


@contextmanager
def spinner(label: str, *, stream: TextIO | None = None, enabled: bool | None = None) -> Iterator[Progress]:
    """`label… 3.2 s` while the block runs (for waits with no count, like loading the model)."""
    progress = Progress(label, stream=stream, enabled=enabled)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.2):
            progress._draw(f"{label}… {time.monotonic() - progress.started:.1f} s")

    thread = threading.Thread(target=tick, name="somna-progress", daemon=True)
    if progress.enabled:
        thread.start()
    try:
        yield progress
    finally:
        stop.set()
        if progress.enabled:
            thread.join()
        progress.done()


class CountingEmbedder:
    """An embedder that reports each batch it embeds to a Progress (the slow part of a reindex)."""

    def __init__(self, inner: Embedder, progress: Progress) -> None:
        self.inner, self.progress = inner, progress
        self.name, self.dim = inner.name, inner.dim

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = self.inner.embed(texts)
        self.progress.advance(len(texts))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def sync(store: Store) -> SyncReport:
    """`store.sync()` (index the files, embed what has no vector), the embedding counted on the terminal."""
    report_line = Progress(f"indexing the {store.scope} store: notes embedded")
    inner = store.embedder
    if inner is not None and inner.ready and report_line.enabled:
        store.embedder = CountingEmbedder(inner, report_line)
    try:
        report = store.sync()
    finally:
        store.embedder = inner
    report_line.done(f"{report_line.n} embedded, {report['indexed']} files read")
    return report
