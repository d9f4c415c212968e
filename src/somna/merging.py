"""How a sync merges one file that both sides changed, so that no memory is lost.

Pure: three versions of a file in (the common base, this machine's, the remote's), what the file holds
after the merge out, with the version that did not apply, if any, for the review queue:

- front matter merges key by key: a key changed on one side takes that side's value; `helpful` and
  `harmful` add up (base + both sides' increments); `updated` is the later of the two;
- a body changed on one side takes that side's; changed on both, a block is merged line by line (never
  cut to its limit), and where that conflicts, or for a memory, the later version applies and the other
  is queued as a proposal that says it came from a sync conflict (git keeps both in history);
- an archive on one side and an edit of the text on the other keeps the edited memory active, and queues
  the archive;
- a file deleted on one side and changed on the other is kept; the same new file on both sides keeps both
  (the remote's under a new id);
- anything else (a note somna cannot read, somna.toml, a skill) takes the later version, and the other
  stays in history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from somna import history, notes
from somna.errors import BadNote
from somna.notes import Note

COUNTERS = ("helpful", "harmful")
ARCHIVE_KEYS = ("status", "superseded_by", "valid_until")
_FRONT = re.compile(r"^---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(?:\r?\n|$)", re.S)


@dataclass
class Loser:
    """A version that did not apply, for the review queue: `op` replace (its text) or archive."""

    target: str  # the memory's id, or block:<name>
    op: str
    body: str
    side: str  # "this machine" or "the remote"
    why: str


@dataclass
class Side:
    text: str | None
    time: int  # when the file last changed on this side (seconds)
    name: str  # "this machine" | "the remote"


@dataclass
class Resolution:
    text: str | None  # what the path holds after the merge; None: removed
    extra: dict[str, str] = field(default_factory=dict)  # further files the merge adds
    losers: list[Loser] = field(default_factory=list)
    note: str = ""


def raw_keys(text: str) -> set[str]:
    """The front-matter keys a file spells out (not those somna fills in when reading it)."""
    m = _FRONT.match(text)
    if not m:
        return set()
    try:
        loaded = yaml.safe_load(m.group(1) or "") or {}
    except yaml.YAMLError:
        return set()
    return {str(k) for k in loaded} if isinstance(loaded, dict) else set()


def target_of(path: str, note: Note) -> str:
    return f"block:{PurePosixPath(path).stem}" if path.startswith("blocks/") else note.id


def resolve(path: str, base: str | None, ours: Side, theirs: Side) -> Resolution:
    """The merge of one file both sides changed."""
    later, earlier = (theirs, ours) if theirs.time > ours.time else (ours, theirs)
    if ours.text == theirs.text:
        return Resolution(ours.text, note=f"{path}: the same on both sides")
    if ours.text is None or theirs.text is None:
        kept = ours if ours.text is not None else theirs
        return Resolution(kept.text, note=f"{path}: deleted on one side, changed on the other: kept")
    is_note = path.endswith(".md") and path.startswith(("memory/", "blocks/"))
    if not is_note:
        return Resolution(later.text, note=f"{path}: changed on both sides; {later.name}'s version applies")
    fallback = PurePosixPath(path).stem.lower() if path.startswith("memory/") else ""
    try:
        o, t = notes.parse(ours.text, fallback_id=fallback), notes.parse(theirs.text, fallback_id=fallback)
        b = notes.parse(base, fallback_id=fallback) if base is not None else None
    except BadNote:
        return Resolution(later.text, note=f"{path}: unreadable on one side; {later.name}'s version applies")
    if b is None:
        return _both_new(path, ours, theirs, t)
    keys = raw_keys(base or "") | raw_keys(ours.text) | raw_keys(theirs.text)
    meta = _merge_meta(b.meta, o.meta, t.meta, later is theirs)
    losers: list[Loser] = []
    body, how = _merge_body(path, b.body, o.body, t.body, later is theirs)
    if how == "conflict":
        loser_note = t if earlier is theirs else o
        losers.append(
            Loser(
                target_of(path, o),
                "replace",
                loser_note.body,
                earlier.name,
                f"edited on {earlier.name} and on {later.name}; {later.name}'s later version applies",
            )
        )
    for archiver, editor in ((ours, t), (theirs, o)):
        side = o if archiver is ours else t
        if side.status in notes.INACTIVE and side.status != b.status and editor.body != b.body:
            for key in ARCHIVE_KEYS:  # the edited memory stays visible; the archive waits for review
                if key in editor.meta:
                    meta[key] = editor.meta[key]
                else:
                    meta.pop(key, None)
            why = f"archived on {archiver.name} while its text was edited on the other side; the edit stays visible"
            losers.append(Loser(target_of(path, o), "archive", "", archiver.name, why))
    for key in list(meta):
        if key not in keys and key not in COUNTERS:
            meta.pop(key)
    text = notes.serialize(Note(meta, body)) if meta else body
    return Resolution(text, losers=losers, note=f"{path}: merged ({how})")


def _both_new(path: str, ours: Side, theirs: Side, t: Note) -> Resolution:
    """The same file new on both sides: both kept, the remote's under a new name and id."""
    if path.startswith("blocks/"):
        merged, clean = history.merge_file(ours.text or "", "", theirs.text or "")
        if clean:
            return Resolution(merged, note=f"{path}: new on both sides, merged")
        return Resolution(
            ours.text,
            losers=[
                Loser(
                    f"block:{PurePosixPath(path).stem}", "replace", t.body, theirs.name, "new on both sides"
                )
            ],
            note=f"{path}: new on both sides; {theirs.name}'s version queued",
        )
    new_id = notes.new_id(t.title or PurePosixPath(path).stem)
    folder = PurePosixPath(path).parent
    new_path = (folder / f"{new_id}.md").as_posix()
    text = theirs.text or ""
    if "id" in raw_keys(text):
        t.meta["id"] = new_id
        text = notes.serialize(Note({k: v for k, v in t.meta.items() if k in raw_keys(text)}, t.body))
    return Resolution(
        ours.text,
        extra={new_path: text},
        note=f"{path}: new on both sides; {theirs.name}'s kept as {new_path}",
    )


def _merge_meta(
    b: dict[str, Any], o: dict[str, Any], t: dict[str, Any], theirs_later: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in [*o, *(k for k in t if k not in o)]:
        bv, ov, tv = b.get(key), o.get(key), t.get(key)
        if key in COUNTERS:
            base = bv if isinstance(bv, int) else 0
            total = (
                base
                + ((ov if isinstance(ov, int) else 0) - base)
                + ((tv if isinstance(tv, int) else 0) - base)
            )
            out[key] = max(0, total)
        elif ov == tv or tv == bv:
            out[key] = ov
        elif ov == bv:
            out[key] = tv
        elif key == "updated":
            out[key] = max(str(ov or ""), str(tv or ""))
        else:
            out[key] = tv if theirs_later else ov
        if out[key] is None:
            out.pop(key)
    return out


def _merge_body(path: str, b: str, o: str, t: str, theirs_later: bool) -> tuple[str, str]:
    """The merged body and how: "same", "one side", "lines" (a line merge), "conflict" (the later applies)."""
    if o == t:
        return o, "same"
    if o == b:
        return t, "one side"
    if t == b:
        return o, "one side"
    if path.startswith("blocks/"):
        merged, clean = history.merge_file(o, b, t)
        if clean:
            return merged, "lines"
        if o.startswith(b.rstrip("\n")) and t.startswith(b.rstrip("\n")):  # both added at the end: both kept
            head = b.rstrip("\n")
            return head + "\n" + o[len(head) :].strip("\n") + "\n" + t[len(head) :].strip(
                "\n"
            ) + "\n", "both added"
    return (t if theirs_later else o), "conflict"
