"""A sleep cycle: snapshot the store, plan actions, apply or queue each by policy, write a report.

Applying goes through the store's conditional edits with the snapshot's versions as the base: a note
that changed since the snapshot is a conflict, and the action is dropped (the next cycle sees the new
text), never overwritten. Nothing is deleted: merged and outdated memories are archived or marked
superseded, and a cycle commits as `somna-sleep` (one commit, or one per part of a long cycle, so
that agents can write in between) what `somna revert` can undo per memory.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from somna import history, notes
from somna.embeddings import HashEmbedder
from somna.errors import Conflict, InvalidInput, NotFound, SomnaError
from somna.sleep.passes import Action, Snapshot, Thresholds, plan, thresholds_from
from somna.store import Store

log = logging.getLogger("somna.sleep")
AUTHOR = "somna-sleep"
HOLD = (
    2.0  # seconds a cycle holds the store lock at most while it applies its plan, before it lets go a moment
)
YIELD = 0.05  # the moment: writers poll the lock every 5 ms
DEFAULT_POLICY = {
    "merge": "apply",
    "supersede": "apply",
    "link": "apply",
    "fold": "apply",
    "archive": "propose",
    "split": "propose",
    "extract": "apply",
    "skill": "propose",
}

ExtraPass = Callable[["Cycle", Snapshot], list[Action]]


@dataclass
class Report:
    started: str
    head: str | None
    dry_run: bool
    seconds: float = 0.0
    applied: list[dict[str, Any]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    cost: float = 0.0
    notes: list[str] = field(default_factory=list)
    commit: str | None = None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.applied:
            out[a["kind"]] = out.get(a["kind"], 0) + 1
        return out

    def markdown(self) -> str:
        c = self.counts()
        lines = [
            f"# sleep cycle {self.started}{' (dry run)' if self.dry_run else ''}",
            "",
            f"snapshot at {self.head[:12] if self.head else '(empty)'}; {self.seconds:.1f} s; "
            f"LLM tokens {self.tokens}, cost ${self.cost:.4f}",
            "",
            "applied: " + (", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "nothing"),
            f"queued for review: {len(self.queued)}; dropped (changed meanwhile or unsafe): {len(self.dropped)}",
        ]
        for title, items in (("Applied", self.applied), ("Queued", self.queued), ("Dropped", self.dropped)):
            if items:
                lines += ["", f"## {title}"]
                lines += [
                    f"- **{a['kind']}** {a['rationale']}" + (f" — {a['why']}" if a.get("why") else "")
                    for a in items[:500]
                ]
                if len(items) > 500:
                    lines.append(f"- … and {len(items) - 500} more (see the JSON report)")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


class Cycle:
    def __init__(
        self,
        store: Store,
        *,
        dry_run: bool = False,
        policy: dict[str, str] | None = None,
        thresholds: Thresholds | None = None,
        extra_passes: list[ExtraPass] | None = None,
    ) -> None:
        self.store = store
        self.dry_run = dry_run
        self.policy = {**DEFAULT_POLICY, **store.config.sleep_policy, **(policy or {})}
        self.th = thresholds or thresholds_from(store.config.sleep_thresholds, str(store.root / "somna.toml"))
        self.extra_passes = extra_passes or []
        self.dir = store.root / ".somna" / "sleep"
        self.report = Report(started=notes.now_iso(), head=None, dry_run=dry_run)
        self.produced: dict[str, str] = {}
        self.actions: list[Action] = []  # the plan so far: an extra pass may revise what came before it

    # -- snapshot -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        store = self.store
        store.sync(commit_as="human", commit=not self.dry_run)
        rows = [r for r in store.index.all_rows("memory")]
        vecs = store.index.vectors(r.rowid for r in rows)
        missing = [i for i, r in enumerate(rows) if r.rowid not in vecs]
        if missing:
            emb = store.embedder if store.embedder is not None and store.embedder.ready else HashEmbedder()
            if emb is not store.embedder or not vecs:
                # one vector space for all rows: with no model, every row gets the hashing embedder
                missing = list(range(len(rows)))
                vecs = {}
            fresh = (
                emb.embed([notes.embed_text(rows[i].title, rows[i].body) for i in missing]) if missing else []
            )
            for i, v in zip(missing, fresh, strict=True):
                vecs[rows[i].rowid] = v
        dim = len(next(iter(vecs.values()))) if vecs else 1
        matrix = np.array([vecs[r.rowid] for r in rows], dtype=np.float32).reshape(len(rows), dim)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms == 0, 1, norms)
        since = self._state().get("last_started", "")
        new = {i for i, r in enumerate(rows) if not since or (r.updated or r.created or "") >= since}
        usage = store.index.usage([r.id for r in rows])
        blocks = []
        for row in store.index.all_rows("block"):
            try:
                limit = store.read(row.id)["meta"].get("limit")
            except SomnaError:
                continue
            if isinstance(limit, int):
                blocks.append((row, limit))
        self.report.head = history.head(store.root)
        return Snapshot(self.report.head, rows, matrix, new, usage, blocks, self.report.started)

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.dir / "state.json").read_text(encoding="utf-8")))
        except (FileNotFoundError, ValueError):
            return {}

    # -- run ----------------------------------------------------------------------------------
    def run(self) -> Report:
        t0 = time.monotonic()
        snap = self.snapshot()
        self.actions = actions = plan(snap, self.th)
        for extra in self.extra_passes:
            actions += extra(self, snap)
        # a question for the LLM judge that no judge settled goes no further: too weak for a person's queue
        actions = [a for a in actions if a.sure or not a.data.get("judge_only")]
        if not self.dry_run:
            self._apply(actions)  # sets report.commit: the cycle's last commit, if it made one
        else:
            for action in actions:
                self._record(
                    self.report.queued if self._mode(action) == "propose" else self.report.applied, action
                )
        self.report.seconds = time.monotonic() - t0
        self._save()
        return self.report

    def _apply(self, actions: list[Action]) -> None:
        """Apply the plan in parts of at most HOLD seconds each, one commit each: between two parts the store
        lock is let go, so an agent's write waits a moment, not for the whole cycle (the first cycle after a
        bulk import of 10,000 memories has some 16,000 changes). A target an agent changes meanwhile is
        dropped from the plan by the conditional edit, never overwritten."""
        todo = list(actions)
        parts = 0
        while todo:
            parts += 1
            done: list[Action] = []
            with self.store.batch(functools.partial(self._part_message, actions, done, todo, parts), AUTHOR):
                start = time.monotonic()
                while todo and (not done or time.monotonic() - start < HOLD):
                    done.append(todo.pop(0))
                    self._dispatch(done[-1])
            self.report.commit = self.store.batch_commit or self.report.commit
            if todo:
                time.sleep(YIELD)  # long enough for a writer polling the lock to take it

    def _part_message(self, actions: list[Action], done: list[Action], todo: list[Action], part: int) -> str:
        """The commit message of a part, made at its commit: the whole plan's if it all fit in one."""
        if part == 1 and not todo:
            return self._message(actions)
        return f"{self._message(done)} (part {part})"

    def _message(self, actions: list[Action]) -> str:
        kinds: dict[str, int] = {}
        for a in actions:
            kinds[a.kind] = kinds.get(a.kind, 0) + 1
        return "sleep cycle: " + (", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) or "nothing to do")

    def _mode(self, action: Action) -> str:
        return "propose" if not action.sure else self.policy.get(action.kind, "propose")

    def _record(self, where: list[dict[str, Any]], action: Action, why: str | None = None) -> None:
        where.append(action.to_json() | ({"why": why} if why else {}))

    def _dispatch(self, action: Action) -> None:
        if self._mode(action) == "propose":
            self._queue(action)
            return
        # Several actions may touch one note (a link, then a fold): each builds on this cycle's own edit,
        # which is the only change possible meanwhile, since the batch holds the store lock.
        action.targets = {r: self.produced.get(r, v) for r, v in action.targets.items()}
        try:
            made = APPLY[action.kind](self.store, action) or {}
            for ref in action.targets:  # the versions this cycle made: the base of its next edit of a note
                self.produced[ref] = made[ref] if ref in made else self.store.read(ref)["version"]
        except (Conflict, NotFound) as exc:
            self._record(self.report.dropped, action, f"changed since the snapshot: {str(exc)[:160]}")
            return
        except InvalidInput as exc:
            self._record(self.report.dropped, action, f"refused: {str(exc)[:160]}")
            return
        self._record(self.report.applied, action)

    def _queue(self, action: Action) -> None:
        pid = notes.new_id(f"sleep-{action.kind}")
        rel = f"proposals/{pid}.json"
        body = json.dumps(
            action.to_json() | {"id": pid, "created": notes.now_iso(), "author": AUTHOR}, indent=2
        )
        notes.atomic_write(self.store._abs(rel), body + "\n")
        self.store._commit([rel], f"sleep proposes {action.kind}", AUTHOR)
        self._record(self.report.queued, action)
        self.report.queued[-1]["proposal"] = pid

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = self.report.started.replace(":", "")
        data = {k: v for k, v in self.report.__dict__.items()}
        (self.dir / "reports").mkdir(exist_ok=True)
        (self.dir / "reports" / f"{stamp}.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        (self.dir / "reports" / f"{stamp}.md").write_text(self.report.markdown(), encoding="utf-8")
        (self.dir / "last-report.md").write_text(self.report.markdown(), encoding="utf-8")
        if not self.dry_run:
            (self.dir / "state.json").write_text(
                json.dumps({"last_started": self.report.started, "head": self.report.head}), encoding="utf-8"
            )


# -- applying actions ------------------------------------------------------------------------------
def _version(action: Action, ref: str) -> str:
    return action.targets[ref]


def _apply_merge(store: Store, action: Action) -> None:
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


def _apply_supersede(store: Store, action: Action) -> dict[str, str]:
    new, old = action.data["new"], action.data["old"]
    done = store.edit(
        old,
        "meta",
        _version(action, old),
        author=AUTHOR,
        policy="apply",
        reason=f"superseded by {new}",
        meta={"status": "superseded", "superseded_by": new, "valid_until": action.data.get("since")},
    )
    current = store.read(new)
    sup = sorted(set(current["meta"].get("supersedes") or []) | {old})
    after = store.edit(
        new, "meta", _version(action, new), author=AUTHOR, policy="apply", meta={"supersedes": sup}
    )
    return {old: done["version"], new: after["version"]}


def _apply_archive(store: Store, action: Action) -> None:
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


def _apply_link(store: Store, action: Action) -> dict[str, str]:
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


def _apply_fold(store: Store, action: Action) -> None:
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


def _apply_split(store: Store, action: Action) -> None:
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


APPLY: dict[str, Callable[[Store, Action], dict[str, str] | None]] = {
    "merge": _apply_merge,
    "supersede": _apply_supersede,
    "archive": _apply_archive,
    "link": _apply_link,
    "fold": _apply_fold,
    "split": _apply_split,
}


REBASABLE = ("archive", "link", "supersede")


def pending(store: Store) -> list[dict[str, Any]]:
    out = []
    for path in sorted((store.root / "proposals").glob("sleep-*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            out.append({"id": path.stem, "error": str(exc)})
    return out


def decide(store: Store, pid: str, accept: bool, *, author: str = "human") -> dict[str, Any]:
    """Accept (apply now, versions re-checked) or reject a queued sleep proposal."""
    notes.check_id(pid, what="proposal id")
    rel = f"proposals/{pid}.json"
    path = store._abs(rel)
    if not path.is_file():
        raise NotFound(f"no sleep proposal {pid!r}; `somna sleep --pending` lists them")
    data = json.loads(path.read_text(encoding="utf-8"))
    with store.batch(f"{'accept' if accept else 'reject'} sleep proposal {pid}: {data.get('kind')}", author):
        if accept:
            action = Action(
                data["kind"],
                data["rationale"],
                data["targets"],
                data.get("evidence", {}),
                data.get("data", {}),
                True,
            )
            if (
                action.kind in REBASABLE
            ):  # they change status or links, not text: apply to the text as it is now
                action.targets = {ref: store.read(ref)["version"] for ref in action.targets}
            APPLY[action.kind](store, action)
        path.unlink()
        store._commit([rel], "", author)
    return {"proposal": pid, "status": "accepted" if accept else "rejected", "kind": data.get("kind")}


def last_report(store: Store) -> str | None:
    path = store.root / ".somna" / "sleep" / "last-report.md"
    return path.read_text(encoding="utf-8") if path.exists() else None
