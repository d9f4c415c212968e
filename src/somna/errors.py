"""somna's errors, translated to MCP tool errors by server.py and to messages by cli.py.

SomnaError
 ├── StoreNotFound      no store at the path
 ├── InvalidInput       the caller's arguments are wrong (empty, too large, bad id, bad path)
 ├── NotFound           no memory, block or proposal with that id
 ├── Conflict           the base version is stale; carries the current text
 ├── DuplicateFound     a near-duplicate already exists (write was not made)
 ├── BadNote            a file on disk cannot be parsed (reported, never lost)
 └── StoreBusy          the store lock could not be taken in time
"""

from __future__ import annotations


class SomnaError(Exception):
    """Base of every error somna raises on purpose."""


class StoreNotFound(SomnaError):
    """No somna store at the given path."""


class InvalidInput(SomnaError):
    """The arguments are not acceptable."""


class NotFound(SomnaError):
    """No such memory, block or proposal."""


class BadNote(SomnaError):
    """A file in the store cannot be read as a note."""


class StoreBusy(SomnaError):
    """Another process holds the store lock for too long."""


class Conflict(SomnaError):
    """The edit was based on a version that is no longer current."""

    def __init__(self, message: str, *, current_version: str, current_text: str) -> None:
        super().__init__(message)
        self.current_version = current_version
        self.current_text = current_text


class DuplicateFound(SomnaError):
    """A near-duplicate memory exists; nothing was written."""

    def __init__(self, message: str, *, duplicate_id: str, similarity: float) -> None:
        super().__init__(message)
        self.duplicate_id = duplicate_id
        self.similarity = similarity
