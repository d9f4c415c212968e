"""The review queue: changes proposed to a store that wait for a person to accept or reject them.

One queue and one file format: `proposals/<id>.md`, YAML front matter that says what to do and a
Markdown body for the reviewer (a diff, or sleep-time's rationale and evidence). What accepting a
proposal does depends on its kind, and each kind is registered with the store explicitly by the part
that proposes it (see `Store.register_kind`):

    edit    an edit of a memory or block                   the store itself
    skill   a new skill, or a new version of one           skill_store.register
    sleep   an action that sleep-time queued for review    sleep.actions.register

Files written by older versions of somna are read too: edit and skill proposals without a `kind`, and
sleep-time's `sleep-*.json`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from somna import notes
from somna.errors import BadNote, InvalidInput, NotFound
from somna.layout import Layout
from somna.notes import Note

HEADER = ("id", "title", "type", "kind", "target", "author", "created", "reason")


@dataclass
class Proposal:
    """One proposed change, as its file says."""

    id: str
    kind: str
    target: str
    title: str
    author: str
    created: str
    reason: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # what the kind needs to apply it
    body: str = ""  # for the reviewer
    path: str = ""


class ProposalSummary(TypedDict, total=False):
    id: str
    kind: str
    target: str
    op: str
    author: str
    created: str
    reason: str | None
    diff: str
    error: str


class Queue:
    """The proposals of one store."""

    def __init__(
        self, layout: Layout, lock: Callable[[], Any], commit: Callable[[list[str], str, str], str | None]
    ) -> None:
        self.layout = layout
        self.lock = lock
        self.commit = commit  # the store's: now, with the batch around it, or with its group

    def add(self, proposal: Proposal, message: str) -> str:
        """Write a proposal (its id made here) and commit it as its author; returns the id. The file's body is
        the proposal's, after a line that says how to accept it."""
        text = render(proposal)
        with self.lock():
            notes.atomic_write(self.layout.path(proposal.path), text)
            self.commit([proposal.path], message, proposal.author)
        return proposal.id

    def paths(self) -> list[Path]:
        folder = self.layout.root / "proposals"
        return sorted([*folder.glob("*.md"), *folder.glob("sleep-*.json")])

    def get(self, pid: str) -> Proposal:
        notes.check_id(pid, what="proposal id")
        for rel in (f"proposals/{pid}.md", f"proposals/{pid}.json"):
            if self.layout.path(rel).is_file():
                return self._read(rel)
        raise NotFound(f"no proposal {pid!r}; list them with the proposals tool or `somna proposals`")

    def list(self) -> list[ProposalSummary]:
        out: list[ProposalSummary] = []
        for path in self.paths():
            rel = path.relative_to(self.layout.root).as_posix()
            try:
                p = self._read(rel)
            except (BadNote, NotFound, InvalidInput) as exc:
                out.append({"id": path.stem, "error": str(exc)})
                continue
            out.append(
                {
                    "id": p.id,
                    "kind": p.kind,
                    "target": p.target,
                    "op": str(p.fields.get("op") or p.fields.get("action") or ""),
                    "author": p.author,
                    "created": p.created,
                    "reason": p.reason,
                    "diff": p.body,
                }
            )
        return out

    def remove(self, proposal: Proposal) -> None:
        """Delete the file (the caller commits it: the accept's or reject's commit)."""
        self.layout.path(proposal.path).unlink(missing_ok=True)

    def _read(self, rel: str) -> Proposal:
        if rel.endswith(".json"):
            return self._read_json(rel)
        _, note, _ = self.layout.load(rel)
        meta = dict(note.meta)
        target = str(meta.get("target") or "")
        kind = str(meta.get("kind") or ("skill" if target.startswith("skill:") else "edit"))
        header = {k: meta.pop(k, None) for k in HEADER}
        return Proposal(
            id=note.id or Path(rel).stem,
            kind=kind,
            target=target,
            title=str(header["title"] or ""),
            author=str(header["author"] or "unknown"),
            created=str(header["created"] or ""),
            reason=header["reason"],
            fields=meta,
            body=note.body,
            path=rel,
        )

    def _read_json(self, rel: str) -> Proposal:
        """A sleep proposal as versions before the one queue wrote it."""
        try:
            data = json.loads(self.layout.path(rel).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            raise BadNote(f"{rel} cannot be read: {exc}") from None
        if not isinstance(data, dict) or "kind" not in data:
            raise BadNote(f"{rel} is not a sleep proposal")
        return sleep_proposal(
            data,
            pid=str(data.get("id") or Path(rel).stem),
            author=str(data.get("author") or "somna-sleep"),
            created=str(data.get("created") or ""),
            path=rel,
        )


def render(proposal: Proposal) -> str:
    """The file of a new proposal: gives it its id and path, returns its text (sync writes it into a merge)."""
    proposal.id = notes.new_id(f"{proposal.kind}-{proposal.title}")
    proposal.path = f"proposals/{proposal.id}.md"
    meta: dict[str, Any] = {
        "id": proposal.id,
        "title": proposal.title,
        "type": "proposal",
        "kind": proposal.kind,
        "target": proposal.target,
        "author": proposal.author,
        "created": proposal.created or notes.now_iso(),
    }
    if proposal.reason:
        meta["reason"] = proposal.reason
    meta |= proposal.fields
    hint = f"Proposed by {proposal.author}. Accept with `somna proposals accept {proposal.id}`.\n\n"
    return notes.serialize(Note(meta, hint + proposal.body))


def diff_body(before: str, after: str, rel: str) -> str:
    """The body of a proposal that changes a file: the unified diff, for the reviewer."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), rel, f"{rel} (proposed)"
    )
    return f"```diff\n{''.join(lines)}```\n"


def sleep_proposal(
    action: dict[str, Any], *, pid: str = "", author: str, created: str = "", path: str = ""
) -> Proposal:
    """The proposal of a sleep-time action (its JSON form: kind, rationale, targets, evidence, data)."""
    rationale = str(action.get("rationale") or "")
    data = action.get("data") or {}
    what = ", ".join(action.get("targets") or {}) or str(data.get("name") or rationale[:80])
    evidence = json.dumps(action.get("evidence") or {}, indent=2, ensure_ascii=False)
    return Proposal(
        id=pid,
        kind="sleep",
        target=", ".join(action.get("targets") or {}),
        title=f"{action['kind']} {what}"[:200],
        author=author,
        created=created,
        reason=rationale,
        fields={
            "action": action["kind"],
            "targets": action.get("targets") or {},
            "evidence": action.get("evidence") or {},
            "data": action.get("data") or {},
        },
        body=f"{rationale}\n\nEvidence:\n\n```json\n{evidence}\n```\n",
        path=path,
    )
