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
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from somna import notes, redaction
from somna.embeddings import HashEmbedder
from somna.errors import InvalidInput, NotFound
from somna.notes import INACTIVE
from somna.sleep.actions import AUTHOR
from somna.sleep.llm_client import (
    BadAnswer,
    BudgetSpent,
    Client,
    LLMConfig,
    LLMUnavailable,
    estimate_tokens,
    parse,
)
from somna.sleep.passes import Action, DisjointSets, Snapshot
from somna.text import DUPLICATE_WORDS, details, missing, sentences, word_overlap

if TYPE_CHECKING:
    from somna.sleep.cycle import Cycle, ExtraPass
    from somna.store import Store

log = logging.getLogger("somna.sleep.llm")

SUFFIXES = (".jsonl", ".json", ".md", ".markdown", ".txt", ".log")
MAX_READ = 4_000_000  # bytes: of a larger transcript only the end is read
CHUNK = 24_000  # characters of transcript per call (~6k tokens)
MAX_CHUNKS = 4  # per transcript: a longer one is read from its end, and the report says so
MAX_ATTEMPTS = 3  # unusable answers for one transcript before it is set aside in inbox/processed/
COMPRESS_AT = 0.8  # a block longer than this share of its limit is offered for compression
PROCEDURAL = ("procedure", "lesson", "fix")
MIN_RECUR = 3  # memories that describe one procedure before it is worth a skill
MAX_SOURCES = 8
MAX_POOL = 2000

Str = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Lesson(_Strict):
    type: Literal["lesson", "preference", "fact", "fix", "decision", "procedure"]
    title: Annotated[Str, StringConstraints(max_length=120)]
    content: Annotated[Str, StringConstraints(min_length=10, max_length=2000)]
    tags: Annotated[
        list[Annotated[Str, StringConstraints(max_length=40, pattern=r"^[a-z0-9][a-z0-9._/-]*$")]],
        Field(max_length=8),
    ] = []

    @field_validator("tags", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return (
            [t.strip().lower().replace(" ", "-") if isinstance(t, str) else t for t in v]
            if isinstance(v, list)
            else v
        )


class Extracted(_Strict):
    memories: Annotated[list[Lesson], Field(max_length=12)]


class Verdict(_Strict):
    holds: Literal["A", "B", "both", "unsure"]
    reason: Annotated[Str, StringConstraints(max_length=400)]


class Written(_Strict):
    title: Annotated[Str, StringConstraints(max_length=120)]
    content: Annotated[Str, StringConstraints(max_length=8000)]


class Moved(_Strict):
    title: Annotated[Str, StringConstraints(max_length=120)]
    content: Annotated[Str, StringConstraints(max_length=4000)]


class Compressed(_Strict):
    text: Annotated[Str, StringConstraints(max_length=20_000)]
    moved: Annotated[list[Moved], Field(max_length=8)] = []


class SkillDraft(_Strict):
    name: Annotated[Str, StringConstraints(max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
    description: Annotated[Str, StringConstraints(min_length=20, max_length=1024)]
    body: Annotated[Str, StringConstraints(min_length=40, max_length=20_000)]


EXTRACT = """You read the transcript of a coding agent's session and write down what is worth remembering in \
later sessions: lessons, the user's preferences, facts about the project or its environment, and fixes \
(symptom, cause, fix). Each item is small and specific: one idea, 1 to 4 sentences, keeping the exact \
commands, flags, paths, numbers, versions and error messages. Leave out what is generic, obvious or only \
true for this session, and never copy secrets. If nothing is worth keeping, answer {"memories": []}.
Answer with JSON only, in exactly this shape:
{"memories": [{"type": "lesson|preference|fact|fix|decision|procedure", "title": "at most 80 characters", \
"content": "...", "tags": ["lowercase-tag"]}]}"""

JUDGE = """Two memories of a coding agent seem to contradict each other. Decide which one holds now: A, B, \
both (they do not really contradict), or unsure. Prefer the one that is more recent or that explicitly \
corrects the other. Answer with JSON only: {"holds": "A|B|both|unsure", "reason": "one sentence"}"""

MERGE = """These memories of a coding agent say nearly the same thing. Write ONE memory that says everything \
they say, shorter where they repeat each other. Keep every detail verbatim: numbers, units, paths, flags, \
commands, identifiers, URLs, names. Add nothing. Answer with JSON only: {"title": "...", "content": "..."}"""

COMPRESS = """This is a core memory block that a coding agent reads at the start of every session. Rewrite it \
to at most {target} characters. Every number, path, flag, command, identifier and URL must survive verbatim, \
either in the block or in a memory you move it to. Answer with JSON only: \
{{"text": "the new block", "moved": [{{"title": "...", "content": "details moved out of the block"}}]}}"""

SKILL = (
    "These memories of a coding agent describe the same kind of task, met again and again. Turn them into one "
    "Agent Skill: a short procedure that another agent can follow the next time. Keep every command, flag, "
    "path, number and identifier from the memories verbatim; add nothing you were not told. Answer with JSON "
    'only: {"name": "lowercase-words-joined-by-hyphens, at most 64 characters", "description": "what the '
    'skill does and when to use it, one or two sentences", "body": "Markdown: when to use it, numbered steps, '
    'pitfalls"}'
)


# -- transcripts ------------------------------------------------------------------------------------
def inbox_files(root: Path) -> list[Path]:
    inbox = root / "inbox"
    if not inbox.is_dir():
        return []
    return sorted(
        p
        for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and (p.suffix.lower() in SUFFIXES or not p.suffix)
    )


def read_transcript(path: Path) -> str:
    """The text of a transcript: Claude Code / chat JSONL rendered as `role: text` lines, anything else as is.
    Likely secrets are redacted before the text goes to a model."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - MAX_READ))
        raw = fh.read()
    text = raw.decode("utf-8", errors="replace")
    rendered = _render_jsonl(text) if path.suffix.lower() in (".jsonl", ".json") else None
    return redaction.redact(rendered if rendered is not None else text)[0]


def _render_jsonl(text: str) -> str | None:
    out: list[str] = []
    parsed = 0
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        parsed += 1
        if obj.get("type") == "summary" and isinstance(obj.get("summary"), str):
            out.append(f"[summary] {obj['summary']}")
            continue
        msg = obj["message"] if isinstance(obj.get("message"), dict) else obj
        role = msg.get("role") or obj.get("type")
        if role in ("user", "assistant", "system", "tool"):
            out += [f"{role}: {p}" for p in _pieces(msg.get("content")) if p.strip()]
    return "\n".join(out) if parsed else None


def _pieces(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            out.append(str(block.get("text", "")))
        elif kind == "tool_use":
            out.append(
                f"[tool {block.get('name')}] {json.dumps(block.get('input'), ensure_ascii=False)[:400]}"
            )
        elif kind == "tool_result":
            inner = block.get("content")
            text = inner if isinstance(inner, str) else " ".join(_pieces(inner))
            out.append(f"[result{' ERROR' if block.get('is_error') else ''}] {text[:600]}")
    return out


def chunks(text: str, size: int = CHUNK) -> list[str]:
    out: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > size:  # one enormous line
            if current:
                out.append(current)
                current = ""
            out.append(line[:size])
            line = line[size:]
        if len(current) + len(line) > size:
            out.append(current)
            current = ""
        current += line
    if current.strip():
        out.append(current)
    return [c for c in out if c.strip()]


# -- the passes -------------------------------------------------------------------------------------
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
        state = _State(self.store, cycle.dry_run)

        def run(client: Client) -> list[Action]:
            dedupe = _Dedupe(self.store, cycle)
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
                out.extend(self._lessons(cycle, dedupe, rel, lessons))
            return []

        try:
            self._run(cycle, "extract", run)
        finally:
            state.save()
        return out

    def _lessons(self, cycle: Cycle, dedupe: _Dedupe, rel: str, lessons: list[Lesson]) -> list[Action]:
        out: list[Action] = []
        known: list[str] = []
        for lesson in lessons:
            tags = sorted(set(lesson.tags) | ({"fix"} if lesson.type == "fix" else set()))
            kind = "lesson" if lesson.type == "fix" else lesson.type
            dup = dedupe.find(lesson.title, lesson.content)
            if dup is None:
                out.append(
                    Action(
                        "extract",
                        f"learned from {rel}: {lesson.title}",
                        {},
                        {"transcript": rel},
                        {"title": lesson.title, "content": lesson.content, "type": kind, "tags": tags},
                    )
                )
                continue
            ref, sim, body, version = dup
            new = [s for s in sentences(lesson.content) if missing(body, details(s).all())]
            if not new:
                known.append(ref)
            elif version is None:  # the duplicate is going away in this cycle: the detail gets its own memory
                out.append(
                    Action(
                        "extract",
                        f"learned from {rel}: {lesson.title}",
                        {},
                        {"transcript": rel},
                        {"title": lesson.title, "content": lesson.content, "type": kind, "tags": tags},
                    )
                )
            else:
                add = " ".join(new)
                out.append(
                    Action(
                        "extract",
                        f"{rel} adds {sorted(missing(body, details(add).all()))[:6]} to {ref}",
                        {ref: version},
                        {"transcript": rel, "similarity": round(sim, 3)},
                        {"append": add},
                    )
                )
        out.append(
            Action(
                "inbox",
                f"{rel}: {len(lessons)} found, {len(out)} new or added, {len(known)} known "
                "already; moved to inbox/processed/",
                {},
                {"known": known},
                {"path": rel},
            )
        )
        return out

    # -- compress -------------------------------------------------------------------------------
    def compress(self, cycle: Cycle, snap: Snapshot) -> list[Action]:
        out: list[Action] = []
        state = _State(self.store, cycle.dry_run)

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
        state = _State(self.store, cycle.dry_run)

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
                recurring_details = _recurring_details([m.body for m in members])
                lost = missing(f"{draft.description}\n{draft.body}", recurring_details)
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
                        {"sources": ids, "details_kept": len(recurring_details)},
                        {"name": draft.name, "content": text},
                    )
                )
            return []

        try:
            self._run(cycle, "skill", run)
        finally:
            state.save()
        return out


def skill_names(root: Path) -> list[str]:
    folder = root / "skills"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def recurring(snap: Snapshot, threshold: float, skip: set[str]) -> list[list[int]]:
    """Groups of MIN_RECUR or more active procedure/lesson/fix memories that are similar to each other (each
    joined to the group by a similarity of at least `threshold`), none offered for a skill before."""
    pool = [
        i
        for i, r in enumerate(snap.rows)
        if r.type in PROCEDURAL and r.status not in INACTIVE and r.id not in skip
    ]
    # the newest MAX_POOL only: the similarity matrix is pool x pool floats (2,000: 16 MB)
    pool = sorted(pool, key=lambda i: snap.rows[i].created or snap.rows[i].updated, reverse=True)[:MAX_POOL]
    if len(pool) < MIN_RECUR or snap.matrix is None or len(snap.matrix) == 0:
        return []
    sims = snap.matrix[pool] @ snap.matrix[pool].T
    sets = DisjointSets(len(pool))
    for a in range(len(pool)):
        for b in np.nonzero(sims[a, a + 1 :] >= threshold)[0]:
            sets.union(a + 1 + int(b), a)
    groups: dict[int, list[int]] = {}
    for k in range(len(pool)):
        groups.setdefault(sets.find(k), []).append(pool[k])
    return [sorted(g)[:MAX_SOURCES] for g in groups.values() if len(g) >= MIN_RECUR]


def _recurring_details(bodies: list[str]) -> frozenset[str]:
    """The details (commands, paths, flags, numbers, identifiers) that two or more of the bodies share."""
    counts: dict[str, int] = {}
    for body in bodies:
        for d in details(body).all():
            counts[d] = counts.get(d, 0) + 1
    return frozenset(d for d, n in counts.items() if n >= 2)


def skill_text(draft: SkillDraft, sources: list[str]) -> str:
    description = " ".join(draft.description.split())
    meta = {
        "name": draft.name,
        "description": description,
        "metadata": {"author": AUTHOR, "sources": " ".join(sources)},
    }
    return (
        "---\n"
        + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
        + "---\n"
        + draft.body.strip()
        + "\n"
    )


def _bad(cycle: Cycle, what: str, exc: BadAnswer) -> None:
    cycle.report.notes.append(f"unusable LLM answer for {what}: {exc}; nothing changed")
    log.warning("unusable LLM answer for %s: %s", what, exc)


class _State:
    """What the LLM passes remember between cycles (.somna/sleep/llm-state.json): failed attempts per
    transcript, and the blocks already offered for compression (by content hash)."""

    def __init__(self, store: Store, dry_run: bool) -> None:
        self.path = store.root / ".somna" / "sleep" / "llm-state.json"
        self.dry_run = dry_run
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            self.data = {}
        self.data.setdefault("attempts", {})
        self.data.setdefault("compressed", [])
        self.data.setdefault("skilled", [])

    def failed(self, rel: str) -> int:
        self.data["attempts"][rel] = int(self.data["attempts"].get(rel, 0)) + 1
        return int(self.data["attempts"][rel])

    def forget(self, rel: str) -> None:
        self.data["attempts"].pop(rel, None)

    def seen(self, digest: str) -> bool:
        return digest in self.data["compressed"]

    def mark(self, digest: str) -> None:
        self.data["compressed"] = (self.data["compressed"] + [digest])[-200:]

    def save(self) -> None:
        if self.dry_run:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        notes.atomic_write(self.path, json.dumps(self.data, indent=2) + "\n")


class _Dedupe:
    """Is a lesson already known? Candidates come from the store's search; similarity is the cosine of the
    cycle's embedder (the one the snapshot used) or word overlap. Lessons of this cycle count too."""

    def __init__(self, store: Store, cycle: Cycle) -> None:
        self.store = store
        self.threshold = cycle.th.duplicate
        emb = store.embedder
        self.emb = emb if emb is not None and emb.ready else HashEmbedder()
        # memories this cycle archives or supersedes: known, but no place to add a detail to
        self.leaving = {ref for a in cycle.actions if a.kind in ("merge", "archive") for ref in a.targets}
        self.leaving |= {a.data["old"] for a in cycle.actions if a.kind == "supersede"}
        self.seen: list[tuple[Any, str]] = []

    def _vec(self, text: str) -> Any:
        v = np.asarray(self.emb.embed([text])[0], dtype=np.float32)
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def _similar(self, vec: Any, text: str, other_vec: Any, other: str) -> float | None:
        """The cosine if the two are near-duplicates (by meaning or by nearly the same words), else None."""
        cos = float(vec @ other_vec)
        same_words = word_overlap(text, other) >= DUPLICATE_WORDS
        return cos if cos >= self.threshold or same_words else None

    def find(self, title: str, content: str) -> tuple[str, float, str, str | None] | None:
        """(id, similarity, text, version or None if it is leaving) of the nearest duplicate, or None."""
        text = f"{title}\n{content}"
        vec = self._vec(text)
        best: tuple[str, float, str, str | None] | None = None
        for other_vec, other in self.seen:
            sim = self._similar(vec, text, other_vec, other)
            if sim is not None:
                best = ("(this cycle)", sim, other, None)
        if best is None:
            for hit in self.store.search(text[:1900], limit=5)["hits"]:
                try:
                    cur = self.store.read(hit["id"])
                except (NotFound, InvalidInput):
                    continue
                other = f"{cur['title']}\n{cur['content']}"
                sim = self._similar(vec, text, self._vec(other), other)
                if sim is not None and (best is None or sim > best[1]):
                    best = (
                        hit["id"],
                        sim,
                        cur["content"],
                        None if hit["id"] in self.leaving else cur["version"],
                    )
        if best is None or best[3] is None:
            self.seen.append((vec, text))
        return best


def llm_passes(store: Store) -> list[ExtraPass]:
    """The LLM passes for this store, or none when its somna.toml has no [llm]."""
    cfg = LLMConfig.load(store.root)
    return LLMPasses(store, cfg).passes() if cfg is not None else []
