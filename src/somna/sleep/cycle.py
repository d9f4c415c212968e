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
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from somna import history, notes
from somna.embeddings import HashEmbedder
from somna.errors import Conflict, InvalidInput, NotFound, SomnaError
from somna.proposals import sleep_proposal
from somna.sleep import gate
from somna.sleep.actions import ACTIONS, AUTHOR, Action
from somna.sleep.passes import plan
from somna.sleep.planning import Snapshot, Thresholds, thresholds_from
from somna.store import Store

log = logging.getLogger("somna.sleep")
HOLD = (
    2.0  # seconds a cycle holds the store lock at most while it applies its plan, before it lets go a moment
)
YIELD = 0.05  # the moment: writers poll the lock every 5 ms
# For tests only, off unless set: a file path. The cycle then applies one action per part and, once a part
# is committed and the first action of the next one is written, creates that file and waits there until
# it is removed: the worst moment to be killed, made certain instead of timed (tests/test_background.py).
PAUSE_ENV = "SOMNA_TEST_CYCLE_PAUSE"
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
    exam: dict[str, Any] = field(default_factory=dict)  # the gate's: probes, scores before and after, drops

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
        if self.exam.get("probes"):
            e = self.exam
            lines.append(
                f"exam: {e['probes']} probes, score {e['score_before']:.3f} before, {e['score_after']:.3f} with "
                f"the plan; {e['dropped']} change(s) dropped for losing an answer"
            )
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
        gate: bool = True,
    ) -> None:
        self.store = store
        self.dry_run = dry_run
        self.policy = {**DEFAULT_POLICY, **store.config.sleep_policy, **(policy or {})}
        self.th = thresholds or thresholds_from(store.config.sleep_thresholds, str(store.root / "somna.toml"))
        self.extra_passes = extra_passes or []
        self.gate = gate  # try the plan on a staging copy first, and drop what loses an exam answer
        self.dir = store.layout.sleep_dir
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
        raw = np.array([vecs[r.rowid] for r in rows], dtype=np.float32).reshape(len(rows), dim)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        matrix = raw / np.where(norms == 0, 1, norms)
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
        with gate.remembering(self.store):  # the trials' vectors serve the cycle's own writes
            if self.gate:
                actions = self._gated(actions)
            if not self.dry_run:
                # all or nothing: a cycle killed half-way is undone by the next sync (intents.py)
                with self.store.all_or_nothing("sleep cycle", AUTHOR):
                    self._apply(actions)  # sets report.commit: the cycle's last commit, if it made one
        if self.dry_run:
            for action in actions:
                self._record(
                    self.report.queued if self._mode(action) == "propose" else self.report.applied, action
                )
        self.report.seconds = time.monotonic() - t0
        self._save()
        return self.report

    def _gated(self, actions: list[Action]) -> list[Action]:
        """The plan less what the exam says loses an answer; the report says what was dropped, and why. A
        merge or supersede that the policy queues for a person is tried too: one that loses an answer is not
        worth a review. A queued archive is not: taking a harmful memory out of view is its purpose."""
        tried = [a for a in actions if self._mode(a) != "propose" or a.kind in ("merge", "supersede")]
        verdict = gate.check(self.store, tried)
        for action, why in verdict.dropped:
            self._record(self.report.dropped, action, why)
        self.report.exam = verdict.summary()
        self.report.notes += [f"the exam: {why}, lower, moved by no change of the plan (not held "
                              "against it)" for why in verdict.shifted[:3]]  # fmt: skip
        dropped = {id(a) for a, _ in verdict.dropped}
        return [a for a in actions if id(a) not in dropped]

    def _apply(self, actions: list[Action]) -> None:
        """Apply the plan in parts of at most HOLD seconds each, one commit each: between two parts the store
        lock is let go, so an agent's write waits a moment, not for the whole cycle (the first cycle after a
        bulk import of 10,000 memories has some 16,000 changes). A target an agent changes meanwhile is
        dropped from the plan by the conditional edit, never overwritten."""
        todo = list(actions)
        parts = 0
        pause = os.environ.get(PAUSE_ENV)
        hold = 0.0 if pause else HOLD
        while todo:
            parts += 1
            done: list[Action] = []
            with self.store.batch(functools.partial(self._part_message, actions, done, todo, parts), AUTHOR):
                start = time.monotonic()
                while todo and (not done or time.monotonic() - start < hold):
                    done.append(todo.pop(0))
                    self._dispatch(done[-1])
                    if pause and parts > 1:
                        _pause_at(pause)
                        pause = None
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
            made = ACTIONS[action.kind](self.store, action) or {}
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
        proposal = sleep_proposal(action.to_json(), author=AUTHOR, created=notes.now_iso())
        pid = self.store.queue.add(proposal, f"sleep proposes {action.kind}")
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


def last_report(store: Store) -> str | None:
    path = store.layout.sleep_dir / "last-report.md"
    return path.read_text(encoding="utf-8") if path.exists() else None


def _pause_at(path: str) -> None:
    """Say that the cycle is here (its pid in `path`) and wait until `path` is removed (PAUSE_ENV)."""
    log.warning("%s: a part committed, the next one begun; waiting until %s is removed", PAUSE_ENV, path)
    notes.atomic_write(Path(path), str(os.getpid()))
    while os.path.exists(path):
        time.sleep(0.05)
