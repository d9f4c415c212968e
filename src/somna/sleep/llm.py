"""The LLM passes of a sleep cycle, when somna.toml has an `[llm]` section (see llm_client.py).

    judge     a contradiction the deterministic pass was unsure of -> the model says which one holds
    merge     a near-duplicate cluster -> the model writes the merged memory; kept only if every detail of
              every member survives (the detail guard), which can also rescue a merge the plan held back
    extract   each transcript in inbox/ -> small, specific lessons, preferences, facts and fixes, checked
              against a strict schema and deduplicated against the store; then moved to inbox/processed/
    compress  a core block near its size limit -> a shorter block, under the detail guard (details may move
              to memories); queued for review by default
    skill     a procedure that recurs (MIN_RECUR or more similar procedure/lesson/fix memories) -> an Agent
              Skill, kept only if every command, path, flag and number that recurs in its sources survives;
              queued for review by default, then written as skills/<name>/SKILL.md

The passes run before the cycle takes the store lock, so slow calls never block an agent; what they return
is applied like any other action, on the versions of the snapshot. Malformed answers change nothing; the
budget stops every pass cleanly.

Beside this module: the prompts and the shapes of the answers (prompts.py), the transcripts of the inbox
(transcripts.py), what the lessons of a transcript become (lessons.py), recurring procedures and the text of
a skill (skill_drafts.py), what the passes remember between cycles (llm_state.py), and the one client they
share (llm_client.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from somna import notes
from somna.sleep.actions import Action
from somna.sleep.lessons import Dedupe, lesson_actions
from somna.sleep.llm_client import (
    BadAnswer,
    BudgetSpent,
    Client,
    LLMConfig,
    LLMUnavailable,
    estimate_tokens,
    parse,
)
from somna.sleep.llm_state import PassState
from somna.sleep.planning import Snapshot
from somna.sleep.prompts import (
    COMPRESS,
    EXTRACT,
    JUDGE,
    MERGE,
    SKILL,
    Compressed,
    Extracted,
    Lesson,
    SkillDraft,
    Verdict,
    Written,
)
from somna.sleep.skill_drafts import recurring, recurring_details, skill_names, skill_text
from somna.sleep.transcripts import CHUNK, chunks, inbox_files, read_transcript
from somna.text import details, missing

if TYPE_CHECKING:
    from somna.sleep.cycle import Cycle, ExtraPass
    from somna.store import Store

log = logging.getLogger("somna.sleep.llm")

MAX_CHUNKS = 4  # per transcript: a longer one is read from its end, and the report says so
MAX_ATTEMPTS = 3  # unusable answers for one transcript before it is set aside in inbox/processed/
COMPRESS_AT = 0.8  # a block longer than this share of its limit is offered for compression


class LLMPasses:
    """The passes share one client per cycle, so one budget covers them all."""

    def __init__(self, store: Store, cfg: LLMConfig) -> None:
        self.store = store
        self.cfg = cfg
        self._cycle: Cycle | None = None
        self._client: Client | None = None

    def client(self, cycle: Cycle) -> Client:
        if self._cycle is not cycle or self._client is None:
            self._cycle, self._client = cycle, Client(self.cfg, cycle.report)
        return self._client

    def passes(self) -> list[ExtraPass]:
        return [self.judge, self.merge, self.extract, self.compress, self.skill]

    def _run(self, cycle: Cycle, name: str, fn: Callable[[Client], list[Action]]) -> list[Action]:
        client = self.client(cycle)
        if client.spent or client.unavailable:
            return []
        try:
            return fn(client)
        except (BudgetSpent, LLMUnavailable):
            return []
        finally:
            log.info("LLM pass %s: %d calls so far, %d tokens", name, client.calls, cycle.report.tokens)

    # -- judge ----------------------------------------------------------------------------------
    def judge(self, cycle: Cycle, snap: Snapshot) -> list[Action]:
        def run(client: Client) -> list[Action]:
            rows = {r.id: r for r in snap.rows}
            for action in [a for a in cycle.actions if a.kind == "supersede" and not a.sure]:
                a, b = rows.get(action.data["new"]), rows.get(action.data["old"])
                if a is None or b is None:
                    continue
                user = (
                    f"A (written {a.created}):\n{a.title}\n{a.body}\n\n"
                    f"B (written {b.created}):\n{b.title}\n{b.body}"
                )
                try:
                    verdict = parse(client.ask(JUDGE, user, max_output=200), Verdict)
                except BadAnswer as exc:
                    _bad(cycle, f"judge {a.id} vs {b.id}", exc)
                    continue
                action.evidence["judge"] = f"{verdict.holds}: {verdict.reason}"
                if verdict.holds in ("A", "B"):
                    new, old = (a, b) if verdict.holds == "A" else (b, a)
                    action.data.update(new=new.id, old=old.id, since=new.created or new.updated)
                    action.rationale = f"{new.id} supersedes {old.id}: the model judged ({verdict.reason})"
                    action.sure = True
            return []

        return self._run(cycle, "judge", run)

    # -- merge-writing --------------------------------------------------------------------------
    def merge(self, cycle: Cycle, snap: Snapshot) -> list[Action]:
        def run(client: Client) -> list[Action]:
            rows = {r.id: r for r in snap.rows}
            for action in [a for a in cycle.actions if a.kind == "merge"]:
                members = [rows[i] for i in action.targets if i in rows]
                if len(members) < 2:
                    continue
                user = "\n\n".join(f"Memory {n + 1}: {m.title}\n{m.body}" for n, m in enumerate(members))
                try:
                    written = parse(client.ask(MERGE, user, max_output=estimate_tokens(user) + 100), Written)
                except BadAnswer as exc:
                    _bad(cycle, f"merge of {', '.join(m.id for m in members)}", exc)
                    continue
                required = frozenset().union(*(details(m.body).all() for m in members))
                lost = missing(f"{written.title}\n{written.content}", required)
                if lost or len(written.content) > sum(len(m.body) for m in members) + 200:
                    why = f"lost {sorted(lost)[:8]}" if lost else "longer than its sources"
                    action.evidence["llm_merge"] = f"rejected by the detail guard: {why}"
                    cycle.report.notes.append(
                        f"detail guard rejected the model's merge of "
                        f"{', '.join(m.id for m in members)}: {why}"
                    )
                    continue
                base = max(members, key=lambda m: len(m.body))
                action.data.update(
                    text=written.content.strip() + "\n",
                    title=written.title,
                    type=base.type,
                    tags=sorted({t for m in members for t in m.tags}),
                )
                action.evidence["llm_merge"] = (
                    f"written by {self.cfg.model}; all {len(required)} details kept"
                )
                if not action.sure:
                    action.sure = True
                    action.rationale = (
                        f"{len(members)} memories say the same thing; the model's merge keeps every detail"
                    )
            return []

        return self._run(cycle, "merge", run)

    # -- extract --------------------------------------------------------------------------------
    def extract(self, cycle: Cycle, snap: Snapshot) -> list[Action]:
        out: list[Action] = []
        cycle.policy.setdefault("inbox", "apply")
        state = PassState(self.store, cycle.dry_run)

        def run(client: Client) -> list[Action]:
            dedupe = Dedupe(self.store, cycle)
            for path in inbox_files(self.store.root):
                rel = path.relative_to(self.store.root).as_posix()
                try:
                    text = read_transcript(path)
                except OSError as exc:
                    cycle.report.notes.append(f"{rel}: cannot be read ({exc.strerror}); left in the inbox")
                    continue
                parts = chunks(text)
                if len(parts) > MAX_CHUNKS:
                    cycle.report.notes.append(
                        f"{rel}: {len(text):,} characters; only the last {MAX_CHUNKS * CHUNK:,} were read"
                    )
                    parts = parts[-MAX_CHUNKS:]
                need = sum(estimate_tokens(EXTRACT + p) for p in parts)
                while len(parts) > 1 and need > self.cfg.max_tokens_per_cycle // 2:
                    need -= estimate_tokens(EXTRACT + parts.pop(0))  # never more than half a cycle's budget
                if cycle.report.tokens + need > self.cfg.max_tokens_per_cycle:
                    raise client.stop(f"max_tokens_per_cycle {self.cfg.max_tokens_per_cycle}")
                lessons: list[Lesson] = []
                try:
                    for part in parts:
                        lessons += parse(
                            client.ask(EXTRACT, f"Transcript ({rel}):\n\n{part}"), Extracted
                        ).memories
                except BadAnswer as exc:
                    tries = state.failed(rel)
                    _bad(cycle, f"extract {rel} (attempt {tries})", exc)
                    if tries >= MAX_ATTEMPTS:
                        out.append(
                            Action(
                                "inbox",
                                f"{rel}: set aside after {tries} unusable answers",
                                {},
                                {"attempts": tries},
                                {"path": rel},
                            )
                        )
                    continue
                state.forget(rel)
                out.extend(lesson_actions(dedupe, rel, lessons))
            return []

        try:
            self._run(cycle, "extract", run)
        finally:
            state.save()
        return out

    # -- compress -------------------------------------------------------------------------------
    def compress(self, cycle: Cycle, snap: Snapshot) -> list[Action]:
        out: list[Action] = []
        state = PassState(self.store, cycle.dry_run)

        def run(client: Client) -> list[Action]:
            busy = {ref for a in cycle.actions for ref in a.targets}
            for row, limit in snap.blocks:
                body = row.body
                digest = notes.content_hash(body)[:16]
                if (
                    len(body) <= COMPRESS_AT * limit
                    or len(body) > limit
                    or row.id in busy
                    or state.seen(digest)
                ):
                    continue
                target = int(limit * 0.6)
                try:
                    answer = parse(
                        client.ask(
                            COMPRESS.format(target=target), body, max_output=estimate_tokens(body) + 200
                        ),
                        Compressed,
                    )
                except BadAnswer as exc:
                    _bad(cycle, f"compress {row.id}", exc)
                    continue
                state.mark(digest)
                required = details(body).all()
                carried = answer.text + "\n" + "\n".join(f"{m.title}\n{m.content}" for m in answer.moved)
                lost = missing(carried, required)
                room = len(answer.text) + (60 if answer.moved else 0) + 30 * len(answer.moved)
                if lost or room > limit or len(answer.text) > 0.9 * len(body):
                    why = (
                        f"it would lose {sorted(lost)[:8]}"
                        if lost
                        else "it would not fit its limit"
                        if room > limit
                        else "it is not shorter"
                    )
                    cycle.report.notes.append(
                        f"detail guard rejected the model's compression of {row.id}: {why}"
                    )
                    cycle.report.dropped.append(
                        {
                            "kind": "compress",
                            "rationale": f"compress {row.id}",
                            "why": f"detail guard: {why}",
                            "targets": {row.id: row.version},
                        }
                    )
                    continue
                out.append(
                    Action(
                        "compress",
                        f"block {row.id}: {len(body)} -> {len(answer.text)} characters, "
                        f"all {len(required)} details kept",
                        {row.id: row.version},
                        {
                            "size": len(body),
                            "limit": limit,
                            "details": len(required),
                            "moved": len(answer.moved),
                        },
                        {"text": answer.text, "moved": [m.model_dump() for m in answer.moved]},
                    )
                )
            return []

        try:
            self._run(cycle, "compress", run)
        finally:
            state.save()
        return out

    # -- skill synthesis ------------------------------------------------------------------------
    def skill(self, cycle: Cycle, snap: Snapshot) -> list[Action]:
        out: list[Action] = []
        state = PassState(self.store, cycle.dry_run)

        def run(client: Client) -> list[Action]:
            taken = set(skill_names(self.store.root))
            for group in recurring(snap, cycle.th.link, set(state.data["skilled"])):
                members = [snap.rows[i] for i in group]
                ids = [m.id for m in members]
                user = "\n\n".join(
                    f"Memory {n + 1} ({m.type}): {m.title}\n{m.body}" for n, m in enumerate(members)
                )
                try:
                    draft = parse(client.ask(SKILL, user, max_output=estimate_tokens(user) + 400), SkillDraft)
                except BadAnswer as exc:
                    _bad(cycle, f"skill from {', '.join(ids)}", exc)
                    continue
                state.data["skilled"] = (state.data["skilled"] + ids)[-2000:]  # offered once, kept or not
                required = recurring_details([m.body for m in members])
                lost = missing(f"{draft.description}\n{draft.body}", required)
                if lost or draft.name in taken:
                    why = (
                        f"it would lose {sorted(lost)[:8]}"
                        if lost
                        else f"a skill {draft.name!r} exists already"
                    )
                    cycle.report.notes.append(f"skill from {', '.join(ids)} not proposed: {why}")
                    cycle.report.dropped.append(
                        {"kind": "skill", "rationale": f"skill {draft.name}", "why": why, "targets": {}}
                    )
                    continue
                taken.add(draft.name)
                text = skill_text(draft, ids)
                out.append(
                    Action(
                        "skill",
                        f"{len(members)} memories describe one procedure: skill {draft.name}",
                        {},
                        {"sources": ids, "details_kept": len(required)},
                        {"name": draft.name, "content": text},
                    )
                )
            return []

        try:
            self._run(cycle, "skill", run)
        finally:
            state.save()
        return out


def _bad(cycle: Cycle, what: str, exc: BadAnswer) -> None:
    cycle.report.notes.append(f"unusable LLM answer for {what}: {exc}; nothing changed")
    log.warning("unusable LLM answer for %s: %s", what, exc)


def llm_passes(store: Store) -> list[ExtraPass]:
    """The LLM passes for this store, or none when its somna.toml has no [llm]."""
    cfg = LLMConfig.load(store.root)
    return LLMPasses(store, cfg).passes() if cfg is not None else []
