"""Every action a sleep cycle can apply, in one explicit registry, and how a queued one is accepted.

An action (see passes.Action) names its targets with the versions the cycle saw; applying it goes through
the store's conditional edits with those versions as the base, so a note changed meanwhile is a Conflict
and the action is dropped, never overwritten. Nothing is deleted: merged and outdated memories are
archived or marked superseded.

    merge supersede archive link fold split      the deterministic passes (passes.py)
    extract inbox compress skill                 the LLM passes (llm.py)

An action the store's policy queues for review becomes a proposal of kind `sleep` (proposals.py);
gate.register tells a store how to accept one (the exam is asked first).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from somna import notes, skill_store
from somna.carry import carried, updates_any
from somna.claims import denies
from somna.errors import Conflict, DuplicateFound, InvalidInput, NotFound
from somna.proposals import Proposal
from somna.store import Store

AUTHOR = "somna-sleep"


@dataclass
class Action:
    """One proposed change with its rationale and evidence; `targets` pins each note to its snapshot version."""

    kind: str
    rationale: str
    targets: dict[str, str]
    evidence: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    sure: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "rationale": self.rationale,
            "targets": self.targets,
            "evidence": self.evidence,
            "data": self.data,
            "sure": self.sure,
        }


def _version(action: Action, ref: str) -> str:
    return action.targets[ref]


def apply_merge(store: Store, action: Action) -> None:
    ids = list(action.targets)
    for ref in ids:  # check every base before writing anything
        current = store.read(ref)["version"]
        if current != action.targets[ref]:
            raise Conflict(f"{ref} changed", current_version=current, current_text="")
    d = action.data
    out = store.write(
        d["text"],
        title=d.get("title"),
        type=d.get("type") or "note",
        tags=d.get("tags"),
        author=AUTHOR,
        force=True,
        meta={"supersedes": ids},
    )
    action.data["merged_id"] = out["id"]
    done: list[str] = []
    try:
        for ref in ids:
            store.edit(
                ref,
                "archive",
                action.targets[ref],
                author=AUTHOR,
                policy="apply",
                reason=f"merged into {out['id']}",
                meta={"superseded_by": out["id"], "archived_reason": "merged"},
            )
            done.append(ref)
    except (Conflict, NotFound):
        # an original changed meanwhile: withdraw the merged memory; the originals stay as they are
        merged = store.read(out["id"])
        store.edit(
            out["id"],
            "archive",
            merged["version"],
            author=AUTHOR,
            policy="apply",
            meta={"archived_reason": "merge withdrawn: an original changed during the cycle"},
        )
        raise


def apply_supersede(store: Store, action: Action) -> dict[str, str]:
    """The older memory marked superseded by the newer; what the older says that the newer neither says nor
    updates is carried into the newer first, so that the update hides nothing."""
    new, old = action.data["new"], action.data["old"]
    older, newer = store.read(old), store.read(new)
    if older["version"] != _version(action, old) or newer["version"] != _version(action, new):
        raise Conflict(f"{old} or {new} changed", current_version="", current_text="")
    old_text = f"{older['title']}\n{older['content']}"
    keep = carried(
        old_text, f"{newer['title']}\n{newer['content']}"
    )  # what the newer neither says nor renews
    new_text = f"{newer['title']}\n{newer['content']}"
    if keep and old_text.lstrip().startswith(keep[0]) and not updates_any(old_text, new_text):
        # what the older says first, its claim, holds details the newer neither says nor gives new values
        # for: the newer is about something else (the analytics Postgres's port is no update of the api's)
        if not denies(new_text, keep[0]):
            raise InvalidInput(f"{new} does not update what {old} says: {keep[0][:120]!r}")
        keep = keep[1:]  # "has never traveled outside Vietnam" of "has visited 15 countries": not carried
    done = store.edit(
        old,
        "meta",
        _version(action, old),
        author=AUTHOR,
        policy="apply",
        reason=f"superseded by {new}",
        meta={"status": "superseded", "superseded_by": new, "valid_until": action.data.get("since")},
    )
    sup = sorted(set(newer["meta"].get("supersedes") or []) | {old})
    if keep:
        after = store.edit(new, "append", newer["version"], author=AUTHOR, policy="apply",
                           text=f"\nKept from {old}: " + "; ".join(keep) + ("" if keep[-1].endswith(".") else "."),
                           reason=f"supersedes {old}; carries what it said that this does not",
                           meta={"supersedes": sup})  # fmt: skip
    else:
        after = store.edit(
            new, "meta", newer["version"], author=AUTHOR, policy="apply", meta={"supersedes": sup}
        )
    return {old: done["version"], new: after["version"]}


def apply_archive(store: Store, action: Action) -> None:
    (ref,) = action.targets
    store.edit(
        ref,
        "archive",
        action.targets[ref],
        author=AUTHOR,
        policy="apply",
        reason=action.rationale,
        meta={"archived_reason": action.rationale[:200]},
    )


def apply_link(store: Store, action: Action) -> dict[str, str]:
    (ref,) = action.targets
    done = store.edit(
        ref,
        "meta",
        action.targets[ref],
        author=AUTHOR,
        policy="apply",
        meta={"related": action.data["related"]},
    )
    return {ref: done["version"]}


def apply_fold(store: Store, action: Action) -> None:
    (ref,) = action.targets
    store.edit(
        ref,
        "meta",
        action.targets[ref],
        author=AUTHOR,
        policy="apply",
        meta={"helpful": action.data["helpful"], "harmful": action.data["harmful"]},
    )
    store.index.mark_folded([ref], action.data["until"])


def apply_split(store: Store, action: Action) -> None:
    (ref,) = action.targets
    out = store.write(action.data["rest"], title=f"moved from {ref}", type="note", author=AUTHOR, force=True)
    keep = action.data["keep"].rstrip("\n") + f"\n\n(more in memory {out['id']})\n"
    store.edit(
        ref,
        "replace",
        action.targets[ref],
        text=keep,
        author=AUTHOR,
        policy="apply",
        reason=f"over its limit: details moved to {out['id']}",
    )


def apply_extract(store: Store, action: Action) -> None:
    d = action.data
    if "append" in d:
        (ref,) = action.targets
        store.edit(
            ref,
            "append",
            action.targets[ref],
            text=d["append"],
            author=AUTHOR,
            policy="apply",
            reason=f"a detail learned from {action.evidence.get('transcript')}",
        )
        return
    try:
        out = store.write(d["content"], title=d["title"], type=d["type"], tags=d["tags"], author=AUTHOR)
    except DuplicateFound as exc:  # an agent wrote it meanwhile
        raise InvalidInput(f"a near-duplicate appeared since the snapshot: {exc.duplicate_id}") from None
    action.data["id"] = out["id"]


def apply_inbox(store: Store, action: Action) -> None:
    src = store.layout.path(action.data["path"])
    if not src.is_file():
        raise NotFound(f"{action.data['path']} is no longer in the inbox")
    dest_dir = store.root / "inbox" / "processed"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if dest.exists():
        dest = dest_dir / f"{src.stem}-{notes.now_iso().replace(':', '')}{src.suffix}"
    os.replace(src, dest)  # the inbox is not committed: a move, never a delete


def apply_compress(store: Store, action: Action) -> None:
    (ref,) = action.targets
    current = store.read(ref)["version"]
    if current != action.targets[ref]:
        raise Conflict(f"{ref} changed", current_version=current, current_text="")
    moved = [
        store.write(m["content"], title=m["title"], type="note", author=AUTHOR, force=True)["id"]
        for m in action.data.get("moved", [])
    ]
    text = (
        action.data["text"].rstrip("\n")
        + "\n"
        + (f"\n(more in memory {', '.join(moved)})\n" if moved else "")
    )
    try:
        store.edit(
            ref,
            "replace",
            action.targets[ref],
            text=text,
            author=AUTHOR,
            policy="apply",
            reason="compressed; every detail kept" + (f", some moved to {', '.join(moved)}" if moved else ""),
        )
    except (Conflict, NotFound, InvalidInput):
        for mid in moved:  # withdraw what was moved out for a compression that did not happen
            store.edit(
                mid,
                "archive",
                store.read(mid)["version"],
                author=AUTHOR,
                policy="apply",
                meta={"archived_reason": f"compression of {ref} withdrawn"},
            )
        raise


def apply_skill(store: Store, action: Action) -> None:
    out = skill_store.propose(
        store,
        action.data["name"],
        action.data["content"],
        author=AUTHOR,
        reason=f"learned from {', '.join(action.evidence.get('sources', []))}",
        policy="apply",
    )
    action.data["version"] = out["version"]


ApplyAction = Callable[[Store, Action], dict[str, str] | None]  # the versions it made, where it knows them

ACTIONS: dict[str, ApplyAction] = {
    "merge": apply_merge,
    "supersede": apply_supersede,
    "archive": apply_archive,
    "link": apply_link,
    "fold": apply_fold,
    "split": apply_split,
    "extract": apply_extract,
    "inbox": apply_inbox,
    "compress": apply_compress,
    "skill": apply_skill,
}
REBASABLE = ("archive", "link", "supersede")  # they change status or links, not text


def queued(store: Store, proposal: Proposal) -> Action:
    """The action a sleep proposal holds, its targets' versions checked again (or taken as they are now, for
    a change of status or links)."""
    fields = proposal.fields
    kind = str(fields.get("action"))
    if kind not in ACTIONS:
        raise InvalidInput(f"proposal {proposal.id} asks for a sleep action somna does not know: {kind!r}")
    action = Action(kind, proposal.reason or "", dict(fields.get("targets") or {}), fields.get("evidence") or {},
                    fields.get("data") or {}, True)  # fmt: skip
    if kind in REBASABLE:  # apply to the text as it is now
        action.targets = {ref: store.read(ref)["version"] for ref in action.targets}
    return action
