"""The edit operations on a note: pure functions, no files, no git, no index.

An edit names an op (`str_replace`, `append`, `replace`, `archive`, `meta`) and its arguments; `apply`
changes a Note in memory and checks the result (body size, a block's limit). The store decides whether
the result is written now or queued as a proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somna import notes, untrusted
from somna.errors import InvalidInput
from somna.notes import Note

OPS = ("str_replace", "append", "replace", "archive", "meta")
META_KEYS = (
    "status",
    "supersedes",
    "superseded_by",
    "valid_until",
    "related",
    "helpful",
    "harmful",
    "tags",
    "archived_reason",
    "trust",
)


@dataclass
class Edit:
    """One change to a note: an op and its arguments, as an agent, a person or sleep-time asked for it."""

    op: str
    old: str | None = None
    new: str | None = None
    count: int = 1
    text: str | None = None
    reason: str | None = None
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InvalidInput(f"op must be one of {', '.join(OPS)}")
        check_meta(self.meta, "be set by an edit")

    def args(self) -> dict[str, Any]:
        """The arguments worth storing in a proposal file."""
        out = {
            "old": self.old,
            "new": self.new,
            "count": self.count if self.op == "str_replace" else None,
            "text": self.text,
            "reason": self.reason,
            "meta": self.meta,
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_args(cls, op: str, args: dict[str, Any]) -> Edit:
        """The edit that `args()` stored (a proposal file)."""
        return cls(
            op,
            old=args.get("old"),
            new=args.get("new"),
            count=int(args.get("count") or 1),
            text=args.get("text"),
            reason=args.get("reason"),
            meta=args.get("meta"),
        )


def check_meta(meta: dict[str, Any] | None, what: str) -> None:
    bad = set(meta or {}) - set(META_KEYS)
    if bad:
        raise InvalidInput(f"front matter keys {sorted(bad)} cannot {what}; allowed: {META_KEYS}")


def kind_of(rel: str) -> str:
    """'block' or 'memory', from where a file lies."""
    return "block" if rel.startswith("blocks/") else "memory"


def apply(note: Note, change: Edit, kind: str, author: str | None = None) -> None:
    """Change `note` as `change` says; `author` (who wrote the new text) updates its provenance."""
    op = change.op
    if op == "str_replace":
        if not change.old:
            raise InvalidInput("str_replace needs `old`: the exact text to replace")
        if change.new is None:
            raise InvalidInput("str_replace needs `new`: the replacement text (may be empty)")
        found = note.body.count(change.old)
        if found != change.count:
            raise InvalidInput(
                f"`old` occurs {found} time(s) in {note.id}, not {change.count}: make it longer to be unique, "
                "or set count to the number of occurrences to replace them all"
            )
        body = note.body.replace(change.old, change.new)
        note.body = notes.check_body(body) if kind == "memory" else body
    elif op == "append":
        add = notes.check_body(change.text or "")
        note.body = (note.body.rstrip("\n") + "\n" + add) if note.body.strip() else add
    elif op == "replace":
        note.body = notes.check_body(change.text or "") if kind == "memory" else (change.text or "")
    elif op == "archive":
        if kind == "block":
            raise InvalidInput("blocks cannot be archived; edit their text instead")
        note.meta["status"] = "archived"
    for key, value in (change.meta or {}).items():
        if value is None:
            note.meta.pop(key, None)
        else:
            note.meta[key] = value
    if len(note.body) > notes.MAX_BODY:
        raise InvalidInput(
            f"the result would be {len(note.body):,} characters; the limit is {notes.MAX_BODY:,}"
        )
    limit = note.meta.get("limit")
    if kind == "block" and isinstance(limit, int) and len(note.body) > limit:
        raise InvalidInput(
            f"block {Path(note.id).name} would be {len(note.body):,} characters; its limit is {limit:,}. "
            "Keep the block short and move details into a memory (write), then reference it."
        )
    if change.op != "meta":  # bookkeeping (links, counters, supersedes) is not a change of content
        note.meta["updated"] = notes.now_iso()
    if op in ("str_replace", "append", "replace") and author is not None:
        provenance(note, author)


def provenance(note: Note, author: str) -> None:
    """After a change of text: trust is the weakest link of its writers; flags follow the new text."""
    if "trust" in note.meta or author != "human":  # a person's edit of an old, unmarked note adds nothing
        note.meta["trust"] = untrusted.weakest(untrusted.effective(note.meta), untrusted.trust_of(author))
    others = [f for f in note.meta.get("flags") or [] if f != untrusted.INSTRUCTIONS]
    now = others + untrusted.flags(f"{note.title}\n{note.body}")
    if now:
        note.meta["flags"] = now
    else:
        note.meta.pop("flags", None)
