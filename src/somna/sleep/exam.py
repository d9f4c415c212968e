"""The exam: what memory must still answer, asked of a store, and the check that a change lost nothing.

A probe is a question and the details its answer must hold: a search for `query` must find, among its
first K active hits, one memory whose text holds every string of `expect`. Probes come from three places:

    store    each active memory's distinctive details (numbers, paths, flags, identifiers), each asked for
             by the memory's own words without the detail, so that only a memory that holds it answers
    use      queries agents ran and then marked a hit helpful (recorded by the server in state.db)
    person   `exams/*.yaml` in the store: a list of {query, expect}; ground truth that only a person changes

`regressions` compares two runs of the same probes (before and after a change): a probe that passed and
fails is lost, unless (store and use probes only) it is an intended update: the successor of the memory it
is about answers with a new value in the same place ("Node 20" -> "Node 22"). Lost too: an answer after
the change only by a successor about another subject (`relations.relation` says "apart"), or only by a
look-alike holding the same value. A later fact about the same person answers, whatever its words: the
exam cannot tell a true correction of a person's fact from a wrong one (a person's probes can).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from somna import notes
from somna.carry import renewed, word_updated
from somna.errors import InvalidInput
from somna.index import Row
from somna.relations import CARRIED, relation
from somna.search import rank as ranking
from somna.store import Store
from somna.text import NUMBER, STOP, WORD, details, distinctive, people, updated

K = 5  # hits a probe's answer must be among
EMBED_BATCH = 64
SAMPLE = 2000  # derived probes `somna exam` asks by default (all of them with --all)
MAX_PER_MEMORY = 2  # probes derived from one memory: its most distinctive details
RARE = 3  # memories that may hold a detail (or two details together) for it to be an answer
MAX_QUERY_WORDS = 16
MIN_WORD = 6  # letters of a word that may stand for a memory's detail when it has no other
EXAMS = "exams"
SOURCES = ("store", "use", "person")
Vector = list[float] | None  # a query's vector (None: search on words)
Vectors = dict[str, Vector]  # by query


class ExamError(InvalidInput):
    """An exam file that somna cannot read; it names the file and what is wrong."""


@dataclass(frozen=True)
class Probe:
    query: str
    expect: tuple[str, ...]
    source: str  # store, use or person
    about: str = ""  # the memory it was derived from (store, use); "" for a person's probe

    @property
    def id(self) -> str:
        key = "\x00".join([self.source, self.query, *self.expect])
        return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "query": self.query, "expect": list(self.expect), "source": self.source,
                "about": self.about}  # fmt: skip


@dataclass
class Outcome:
    """What a probe found: whether it passed, which hit answered it, and the ids of the hits it saw."""

    probe: Probe
    passed: bool
    answered_by: str | None = None
    rank: int | None = None
    hits: list[str] = field(default_factory=list)
    below: list[str] = field(default_factory=list)  # what ranked after the hits (the gate's blame)

    def to_json(self) -> dict[str, Any]:
        return {"probe": self.probe.to_json(), "passed": self.passed, "answered_by": self.answered_by,
                "rank": self.rank, "hits": self.hits}  # fmt: skip


@dataclass
class Regression:
    """A probe that passed before a change and fails after it."""

    before: Outcome
    after: Outcome
    stranger: bool = False  # answered after only by a look-alike, not by what replaced its memory

    @property
    def probe(self) -> Probe:
        return self.before.probe

    def why(self) -> str:
        p, was, now = self.probe, self.before.answered_by, self.after.answered_by
        if self.after.passed:  # but by a look-alike, or by what replaced its memory, about another subject
            how = f"which replaced {was} but is about something else" if not self.stranger else "a look-alike"
            return f"probe {p.id} [{p.source}] {p.query!r} is answered only by {now}, {how}"
        return f"probe {p.id} [{p.source}] {p.query!r} no longer finds {list(p.expect)}" + (
            f" (was answered by {was})" if was else ""
        )


# -- probes ----------------------------------------------------------------------------------------------
def _question(text: str, *expected: str) -> str:
    """The memory's words without the details it must answer with (nor any other detail), as a search an
    agent would make."""
    without = text
    for detail in expected:
        without = re.sub(re.escape(detail), " ", without, flags=re.IGNORECASE)
    for other in sorted(details(without).all(), key=lambda d: (-len(d), d)):  # a detail holds shorter ones
        if other.strip():
            without = without.replace(other, " ")
    words = [w for w in WORD.findall(without.lower()) if not NUMBER.fullmatch(w)]
    return " ".join(words[:MAX_QUERY_WORDS])


def derived(rows: Iterable[Row], *, only: set[str] | None = None) -> list[Probe]:
    """Probes from the store's active memories (of `only`, when given): each memory's rarest details, at most
    MAX_PER_MEMORY, a detail found in many memories being no answer to anything. A memory whose details are
    each common is asked for two of them together, when few memories hold both; one with no number, path,
    flag or identifier is asked for its rarest word ("before investigating a prod alert")."""
    active = [r for r in rows if r.kind == "memory" and r.status not in notes.INACTIVE]
    texts = {r.id: text_of(r) for r in active}
    found = {rid: distinctive(text) for rid, text in texts.items()}
    spread = Counter(d for ds in found.values() for d in set(ds))
    pairs = {rid: _rarest_pair(ds, spread) for rid, ds in found.items()}
    pair_spread = Counter(p for p in pairs.values() if p)
    vocabulary = {rid: _content_words(text) for rid, text in texts.items()}
    word_spread = Counter(w for ws in vocabulary.values() for w in ws)
    probes = []
    for rid, ds in found.items():
        if only is not None and rid not in only:
            continue
        rare = sorted((d for d in ds if spread[d] <= RARE), key=lambda d: (spread[d], -len(d)))
        expectations: list[tuple[str, ...]] = [(d,) for d in rare[:MAX_PER_MEMORY]]
        pair = pairs[rid]
        if not expectations and pair and pair_spread[pair] <= RARE:
            expectations = [pair]
        if not expectations:
            words = sorted(
                (w for w in vocabulary[rid] if word_spread[w] <= 2),
                key=lambda w: (word_spread[w], -len(w), w),
            )
            expectations = [(w,) for w in words[:1]]
        for expect in expectations:
            query = _question(texts[rid], *expect)
            if len(query.split()) >= 2:
                probes.append(Probe(query, expect, "store", rid))
    return probes


def _rarest_pair(details_of: list[str], spread: Counter[str]) -> tuple[str, str] | None:
    if len(details_of) < 2:
        return None
    first, second = sorted(details_of, key=lambda d: (spread[d], -len(d), d))[:2]
    return (first, second) if first < second else (second, first)


def _content_words(text: str) -> set[str]:
    """Words long enough to say something, without the small ones (a rare word can be an answer)."""
    return {w for w in WORD.findall(text.lower()) if len(w) >= MIN_WORD and w not in STOP and not w.isdigit()}


def written(root: Path) -> list[Probe]:
    """A person's probes: every `exams/*.yaml` of the store, each a list of {query, expect}."""
    probes = []
    for path in sorted((root / EXAMS).glob("*.y*ml")):
        rel = path.relative_to(root).as_posix()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            raise ExamError(f"{rel} cannot be read: {str(exc).splitlines()[0]}") from None
        if data is None:
            continue
        if not isinstance(data, list):
            raise ExamError(
                f"{rel}: expected a list of probes ({{query, expect}}), got {type(data).__name__}"
            )
        for i, item in enumerate(data, start=1):
            query = item.get("query") if isinstance(item, dict) else None
            if not isinstance(query, str) or not query.strip():
                raise ExamError(f"{rel}: probe {i} needs a `query` (a question, as text)")
            expect = item.get("expect")
            values = [expect] if isinstance(expect, str | int | float) else expect
            if not (
                isinstance(values, list) and values and all(isinstance(v, str | int | float) for v in values)
            ):
                raise ExamError(f"{rel}: probe {i} needs `expect`: a string (or a list of them) to hold")
            probes.append(Probe(query.strip(), tuple(str(v) for v in values), "person"))
    return probes


def add_probe(store: Store, query: str, expect: str, *, author: str) -> str:
    """Append a person's probe to exams/probes.yaml and commit it; returns the file's path in the store."""
    if not query.strip() or not expect.strip():
        raise ExamError("a probe needs a query and what its answer must hold")
    rel = f"{EXAMS}/probes.yaml"
    path = store.layout.path(rel)
    with store.locked():
        written(store.root)  # refuse to add to a file that is already broken
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        item = yaml.safe_dump(
            [{"query": query.strip(), "expect": expect.strip()}], allow_unicode=True, sort_keys=False
        )
        notes.atomic_write(path, old + ("" if not old or old.endswith("\n") else "\n") + item, mode=0o644)
        store.commit([rel], f"exam: a probe for {query.strip()[:80]!r}", author)
    return rel


def learned(store: Store) -> list[Probe]:
    """Probes from use: a query an agent ran and then marked a hit helpful; its answer must still hold the
    details that hit held (its most distinctive ones), or be that memory's successor."""
    probes = []
    for query, note_id in store.index.helpful_queries():
        row = store.index.get(note_id)
        if row is None:
            continue
        ds = distinctive(text_of(row))[:MAX_PER_MEMORY]
        if ds:
            probes.append(Probe(query, tuple(ds[:1]), "use", note_id))
    return probes


def probes_of(store: Store, *, only: set[str] | None = None) -> list[Probe]:
    """Every probe of the store: derived (of `only`, when given), learned from use, and written by people."""
    unique: dict[str, Probe] = {}
    for p in [*derived(store.index.all_rows("memory"), only=only), *learned(store), *written(store.root)]:
        unique.setdefault(p.id, p)
    return list(unique.values())


# -- running ---------------------------------------------------------------------------------------------
def holds(text: str, expect: tuple[str, ...]) -> bool:
    """Whether `text` carries every detail of `expect`, a number as a whole number ("--timeout=10" is not in
    "--timeout=120", "100" not in "1000" or "2100")."""
    return all(
        re.search(
            (r"(?<![\d.])" if e[:1].isdigit() else "")
            + re.escape(e)
            + (r"(?!\.?\d)" if e[-1:].isdigit() else ""),
            text,
            re.I,
        )
        is not None
        for e in expect
    )


def run(store: Store, probes: list[Probe], k: int = K, vectors: Vectors | None = None) -> list[Outcome]:
    """Ask every probe of the store; a probe passes when one of its first k active hits holds its details.
    `vectors` (by query, filled here): the gate's runs before and after a change embed each query once."""
    vectors = {} if vectors is None else vectors
    todo = [q for q in dict.fromkeys(p.query for p in probes) if q not in vectors]
    store.ensure_synced()
    out, texts = [], dict[str, str]()  # a memory's text, read once for all probes (bodies are not in a hit)
    with _embedding(store, todo, vectors) as vector, store.index.many_searches():
        for probe in probes:  # a search's ranking: the ids, without the snippets and provenance of its hits
            found = ranking(store.index, store.embedder, probe.query, limit=k, vector=vector(probe.query))
            hits = [r.id for _, r in found.shown]
            outcome = Outcome(probe, False, hits=hits, below=[r.id for _, r in found.below])
            for rank, hid in enumerate(outcome.hits, start=1):
                texts[hid] = texts[hid] if hid in texts else _text_of(store, hid)
                if holds(texts[hid], probe.expect):
                    outcome.passed, outcome.answered_by, outcome.rank = True, hid, rank
                    break
            out.append(outcome)
    return out


@contextmanager
def _embedding(store: Store, queries: list[str], vectors: Vectors) -> Iterator[Callable[[str], Vector]]:
    """A query's vector when asked for, embedded in batches on a thread of its own while the searches run (half
    the exam's time each at 10k memories); None with no model loaded: search on words, as an agent's."""
    embedder, pool = store.embedder, ThreadPoolExecutor(1, thread_name_prefix="somna-exam-embed")
    made: dict[str, tuple[list[str], Future[list[list[float]]]]] = {}
    vectors.update({} if embedder is not None and embedder.ready else dict.fromkeys(queries))
    if embedder is not None and embedder.ready:
        for at in range(0, len(queries), EMBED_BATCH):
            batch = queries[at : at + EMBED_BATCH]
            made |= dict.fromkeys(batch, (batch, pool.submit(embedder.embed, batch)))

    def vector(query: str) -> Vector:
        if query not in vectors:
            vectors.update(zip(made[query][0], made[query][1].result(), strict=True))
        return vectors[query]

    try:
        yield vector
    finally:
        pool.shutdown(cancel_futures=True)


def sample(probes: list[Probe], size: int) -> list[Probe]:
    """At most `size` of the derived probes (every learned and written one): the same ones for the same store,
    chosen by probe id, so that two runs of the exam ask the same questions."""
    derived_probes = sorted((p for p in probes if p.source == "store"), key=lambda p: p.id)
    return [p for p in probes if p.source != "store"] + derived_probes[:size]


def score(outcomes: list[Outcome]) -> float:
    return sum(o.passed for o in outcomes) / len(outcomes) if outcomes else 1.0


# -- judging a change -------------------------------------------------------------------------------------
def regressions(
    before: list[Outcome],
    after: list[Outcome],
    store: Store,
    successors: dict[str, str],
    original: Store | None = None,
) -> list[Regression]:
    """Probes that passed before and fail after, less the intended updates (see the module docstring).
    `store` is the store after the change; `successors` maps a memory the change retired to the one that
    took its place; `original`, the store before it. A probe still answered, but only by the memory that
    replaced the one that answered it (a supersede carries what it hides into the newer memory), is lost
    too when the two were about other subjects, as the original texts say: "unit tests time out after 10
    s" kept inside a memory about integration tests is no longer an answer an agent can trust."""
    lost = []
    by_id = {o.probe.id: o for o in after}
    for b in before:
        a = by_id.get(b.probe.id)
        if a is None or not b.passed:
            continue
        # retired by the change, its memory's answer now comes from a look-alike that by chance holds the
        # same value ("timeout-minutes: 10" for a per-test "--timeout=10"), not from what replaced it
        was = b.answered_by or ""
        stranger = a.passed and b.probe.source != "person" and was in successors
        stranger = stranger and a.answered_by != _heir(was, successors)
        if a.passed and not stranger:
            if original is not None and _foreign_heir(b, a, original, successors):
                lost.append(Regression(b, a))
            continue
        if b.probe.source != "person" and _answered_by_successor(b, a, store, successors):
            continue
        lost.append(Regression(b, a, stranger))
    return lost


def _heir(ref: str, successors: dict[str, str]) -> str | None:
    """What holds now in place of a memory that a change retired: the end of its chain of successors."""
    heir, seen = successors.get(ref), set()
    while heir in successors and heir not in seen:  # a chain of updates: the last one holds
        seen.add(heir)
        heir = successors[heir]
    return heir


def _foreign_heir(b: Outcome, a: Outcome, original: Store, successors: dict[str, str]) -> bool:
    """Whether `a` is answered only by the memory that replaced the one that answered `b`, about another
    subject (`relations.relation`, on the texts before the change); a fact about the same person is not."""
    was = b.answered_by or ""
    if not was or a.answered_by != successors.get(was):
        return False
    old_text, new_text = _text_of(original, was), _text_of(original, a.answered_by or "")
    if not old_text or not new_text or set(people(old_text)) & set(people(new_text)):
        return False
    return relation(new_text, old_text)[0] == "apart"


def _answered_by_successor(b: Outcome, a: Outcome, store: Store, successors: dict[str, str]) -> bool:
    heir = _heir(b.probe.about or b.answered_by or "", successors)
    if heir is None or heir not in a.hits:
        return False
    old_text, new_text = _text_of(store, b.probe.about), _text_of(store, heir)
    if not old_text or not new_text:
        return False
    if set(people(old_text)) & set(people(new_text)):
        return True  # a fact about the same person, corrected, whatever its words (see the module docstring)
    kind = relation(CARRIED.sub("", new_text), old_text)[0]  # its own words, not what it carried
    if kind == "apart":
        return False  # another subject or attribute, however alike its value
    if kind == "update":
        return True  # says it changed what the older says ("now wants rebase merges instead of squash")
    return all(
        holds(new_text, (d,))
        or updated(old_text, new_text, d)
        or renewed(old_text, new_text, d)
        or word_updated(old_text, new_text, d)
        for d in b.probe.expect
    )


def _text_of(store: Store, ref: str) -> str:
    return text_of(row) if (row := store.index.get(ref)) is not None else ""


def text_of(row: Row) -> str:
    """A memory's text as one piece: its body, after its title when the body does not open with it."""
    return row.body if row.body.lstrip().startswith(row.title.strip()) else f"{row.title}\n{row.body}"
