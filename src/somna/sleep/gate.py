"""The gate: a cycle's plan is tried on a copy of the store that no agent sees, the exam is asked before
and after, and the changes that lose an answer are dropped before anything lands.

The copy (the staging store) is a shared clone of the store's git repository with the content folders
copied beside it (file times kept, so the copied index sees nothing to re-read) and a copy of its index
and state; it lives in a temporary folder and is removed afterwards. A change that made a probe fail is
dropped, and the rest is tried again, until the exam finds no regression (see exam.py for what counts as
one and what is an intended update).
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from somna import history, notes
from somna.db import connect
from somna.embeddings import Embedder
from somna.errors import InvalidInput, SomnaError
from somna.proposals import Proposal
from somna.sleep import exam
from somna.sleep.actions import ACTIONS, AUTHOR, Action, queued
from somna.store import Store

log = logging.getLogger("somna.sleep.gate")

STAGING_PREFIX = "somna-staging-"
STALE = 6 * 3600  # seconds after which a staging folder is one that a killed cycle left behind
MAX_ROUNDS = 8  # tries of a shrinking plan before the gate gives up (6 were needed at 10k memories)
GATED = ("merge", "supersede", "archive", "split", "extract", "compress")  # they change what a search finds
NEW_MEMORIES = ("merge", "split", "extract", "compress")  # they write memories that may outrank an answer


@dataclass
class Verdict:
    """What the gate decided: the plan that may land, and each dropped change with the probe it failed."""

    kept: list[Action]
    dropped: list[tuple[Action, str]] = field(default_factory=list)
    probes: int = 0
    before: float = 1.0  # the exam's score on the store as it is
    after: float = 1.0  # and on the staging store with the kept plan applied
    rounds: int = 0
    # answers pushed a few places down by no change: see _culprits
    shifted: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {"probes": self.probes, "score_before": round(self.before, 4), "score_after": round(self.after, 4),
                "dropped": len(self.dropped), "rounds": self.rounds, "shifted": len(self.shifted)}  # fmt: skip


class Remembering:
    """An embedder that embeds each single text (a written memory) once while a cycle runs: the gate's trials
    write the merged and edited memories that the cycle then writes for real, and the same text gives the
    same vector (the model's own cache of single texts keeps the last 256 only)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.seen: dict[str, array[float]] = {}

    @property
    def ready(self) -> bool:
        return self.inner.ready

    def embed(self, texts: list[str]) -> list[list[float]]:
        if len(texts) != 1:
            return self.inner.embed(texts)
        if texts[0] not in self.seen:
            self.seen[texts[0]] = array("d", self.inner.embed(texts)[0])  # each float as it came
        return [list(self.seen[texts[0]])]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def remembering(store: Store) -> Iterator[None]:
    """The store's embedder embeds each written text once until the end of the block (see Remembering)."""
    inner = store.embedder
    if inner is not None:
        store.embedder = Remembering(inner)
    try:
        yield
    finally:
        store.embedder = inner


@contextmanager
def staging(store: Store) -> Iterator[Store]:
    """A private copy of the store, as it is now, for a trial; removed on exit (and, if a kill -9 left one
    behind, by a later trial: see `_sweep`)."""
    _sweep()
    tmp = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX))
    root = tmp / "store"
    scratch = {tmp, tmp.resolve()}  # thrown away afterwards: its files need not reach the disk one by one
    notes.SCRATCH.update(scratch)
    try:
        with store.locked():  # no write half-done in the copy
            store.flush_commits()
            history.git(tmp, "clone", "--quiet", "--shared", "--no-checkout", str(store.root), str(root))
            history.git(root, "reset", "--quiet")
            for sub in ("memory", "blocks", "skills"):
                if (store.root / sub).is_dir():
                    shutil.copytree(store.root / sub, root / sub, symlinks=True, dirs_exist_ok=True)
            for sub in ("proposals", "inbox"):
                (root / sub).mkdir(exist_ok=True)
            if (store.root / "somna.toml").is_file():
                shutil.copy2(store.root / "somna.toml", root / "somna.toml")
            (root / ".somna").mkdir()
            for name in ("main", "state"):
                target = connect(root / ".somna" / ("index.db" if name == "main" else "state.db"), vec=False)
                try:
                    store.index.conn.backup(target, name=name)
                finally:
                    target.close()
        stage = Store(root, scope=store.scope, embedder=store.embedder)
        try:
            yield stage
        finally:
            stage.close()
    finally:
        notes.SCRATCH.difference_update(scratch)
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep() -> None:
    """Remove staging folders that killed cycles left behind: none is in use for hours."""
    for folder in Path(tempfile.gettempdir()).glob(f"{STAGING_PREFIX}*"):
        try:
            if time.time() - folder.stat().st_mtime > STALE:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def check(store: Store, actions: list[Action], probes: list[exam.Probe] | None = None) -> Verdict:
    """Try `actions` on a staging copy of `store` until the exam finds no regression; the store itself is
    not changed. Only the kinds that change what a search finds are tried; the rest always pass."""
    gated = [a for a in actions if a.kind in GATED]
    verdict = Verdict(kept=list(actions))
    if not gated:
        return verdict
    touched = {ref for a in gated for ref in a.targets}
    if probes is None:
        probes = exam.probes_of(store, only=touched)
    if not probes:
        return verdict
    vectors: exam.Vectors = {}  # each query embedded once, for the run before and every run after
    before = exam.run(store, probes, vectors=vectors)
    verdict.before = exam.score(before)
    # A probe derived from a memory that some other memory answered (a look-alike that holds the same
    # value) says nothing about that memory: whether it passes after a change is chance.
    before = [o for o in before if o.probe.source != "store" or o.answered_by == o.probe.about]
    probes = [o.probe for o in before]
    verdict.probes = len(probes)
    for verdict.rounds in range(1, MAX_ROUNDS + 1):
        trying = [a for a in verdict.kept if a.kind in GATED]
        with staging(store) as stage:
            successors, took = _apply(stage, trying)
            after = exam.run(stage, probes, vectors=vectors)
            lost = exam.regressions(before, after, stage, successors, original=store)
        verdict.after = exam.score(after)
        # only what took effect is to blame: of two supersedes of one memory, the second found it superseded
        # already, and is tried on its own in the next round
        culprits, shifted = _culprits(lost, took)
        verdict.shifted = [r.why() for r in shifted]
        lost = [r for r in lost if r not in shifted]
        if not lost:
            return verdict
        if not culprits:
            break
        for action, why in culprits:
            verdict.kept.remove(action)
            verdict.dropped.append((action, why))
    # answers still lost and no change to blame, or after MAX_ROUNDS: nothing that changes what a search
    # finds lands this cycle
    why = f"the exam still lost answers ({lost[0].why()}) " + (
        f"after {MAX_ROUNDS} rounds of dropping the changes to blame"
        if culprits
        else "and no change could be blamed"
    )
    for action in [a for a in verdict.kept if a.kind in GATED]:
        verdict.kept.remove(action)
        verdict.dropped.append((action, why))
    return verdict


def _apply(stage: Store, actions: list[Action]) -> tuple[dict[str, str], list[tuple[Action, set[str]]]]:
    """Apply copies of the actions to the staging store; returns what each retired memory was replaced by,
    and the actions that took effect, each with the memories it wrote."""
    successors: dict[str, str] = {}
    took: list[tuple[Action, set[str]]] = []
    with stage.batch("trial of a sleep cycle", AUTHOR):
        for original in actions:
            action = copy.deepcopy(original)  # applying writes ids into an action's data
            try:
                ACTIONS[action.kind](stage, action)
            except SomnaError as exc:  # it will be dropped on the store too (changed since the snapshot)
                log.info("trial: %s not applied: %s", action.kind, exc)
                continue
            wrote = {v for k, v in action.data.items() if k.endswith("id") and isinstance(v, str)}
            if action.kind == "supersede":
                successors[action.data["old"]] = action.data["new"]
                wrote.add(action.data["new"])  # it may carry what the older said
            elif action.kind == "merge" and action.data.get("merged_id"):
                successors |= dict.fromkeys(action.targets, action.data["merged_id"])
            took.append((original, wrote))
    return successors, took


def _culprits(
    lost: list[exam.Regression], took: list[tuple[Action, set[str]]]
) -> tuple[list[tuple[Action, str]], list[exam.Regression]]:
    """The changes to drop for the probes they made fail: those that touched the memory a probe was about or
    that answered it before; failing that, those that wrote a memory now ranked above that answer (among
    the hits, or below them too when the answer is there). A derived or learned probe with neither is a
    shift (`shifted`): its answer, touched by no change, now lower than memories that no change wrote.
    What moved it is the store's statistics as a whole (how rare each word is, which vectors the binary
    pre-selection keeps), which every write moves; dropping changes one by one finds no culprit. A
    person's probe with neither blames every change that wrote new memories."""
    out: list[tuple[Action, str]] = []
    shifted = []
    for regression in lost:
        after, answer = regression.after, regression.before.answered_by
        memories = {regression.probe.about, answer} - {"", None}
        direct = [a for a, _ in took if set(a.targets) & memories]
        ranked = after.hits + after.below
        window = set(ranked[: ranked.index(answer)] if answer in ranked else after.hits)
        above = [a for a, wrote in took if wrote & window]
        if not direct and not above and regression.probe.source != "person":
            shifted.append(regression)
        for action in direct or above:
            if all(action is not a for a, _ in out):
                out.append((action, f"the exam: {regression.why()}"))
    if out or len(shifted) == len(lost):
        return out, shifted
    why = f"the exam: {next(r for r in lost if r not in shifted).why()}"
    return [(a, why) for a, _ in took if a.kind in NEW_MEMORIES], shifted


def accept(store: Store, proposal: Proposal, author: str, force: bool = False) -> dict[str, Any]:
    """A person accepts a queued sleep action: the exam is asked first. A merge or supersede that would lose
    an answer is refused with the probe it fails, unless `force`; for an archive (taking a memory out of
    view is its purpose) the answers it takes away are said, not refused. The store's accept commits."""
    action = queued(store, proposal)
    breaks = [why for _, why in check(store, [action]).dropped] if action.kind in GATED else []
    if breaks and not force and action.kind != "archive":
        raise InvalidInput(f"accepting {proposal.id} would lose an answer: {breaks[0]}; accept it with force "
                           "to apply it anyway")  # fmt: skip
    ACTIONS[action.kind](store, action)
    return {"status": "accepted", "kind": action.kind} | ({"breaks": breaks} if breaks else {})


def register(store: Store) -> None:
    store.register_kind("sleep", accept)
