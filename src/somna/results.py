"""The shapes of what the core API returns, written once (search's own are in search.py)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ReadResult(TypedDict):
    id: str
    scope: str
    kind: str  # memory or block
    title: str
    version: str  # the base_version of an edit
    path: str
    source: str
    trust: str
    meta: dict[str, Any]
    content: str
    flags: NotRequired[list[str]]
    warning: NotRequired[str]


class WriteResult(TypedDict):
    id: str
    scope: str
    version: str
    path: str
    title: str
    trust: str
    redacted: NotRequired[list[str]]
    flags: NotRequired[list[str]]
    warning: NotRequired[str]
    likely_update_of: NotRequired[
        str
    ]  # an alike memory this one gives another value than (writes.check_duplicate)
    note: NotRequired[str]


class EditResult(TypedDict, total=False):
    status: str  # applied or proposed
    id: str
    scope: str
    version: str
    previous_version: str
    commit: str | None
    proposal: str
    note: str
    redacted: list[str]


class Version(TypedDict):
    """One commit in the history of a memory or block."""

    commit: str  # the first 12 characters of its sha
    version: str | None  # the file's version there (None: the commit deleted it)
    author: str
    date: str
    message: str


class HistoryResult(TypedDict):
    id: str
    scope: str
    versions: list[Version]  # newest first
    diff: NotRequired[str]  # of the last change


class RevertResult(TypedDict):
    status: str  # reverted
    id: str
    scope: str
    to_commit: str
    version: str


class FeedbackResult(TypedDict):
    recorded: int
    signal: str
