"""The contradictions pass: similar memories that disagree -> the older superseded by the newer, or the pair
queued for a person, or put to the LLM judge when too weak to queue.

candidates  each changed memory's neighbours that may contradict it, with a cheap upper bound of the score
picking     each newer memory's best match, scored exactly only where it could matter
unclear     pairs written at the same moment: only each other's best match is worth a person's time
actions     the supersedes (under the detail guard) and the questions for the judge
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from somna.claims import Claim, Disagreement, disagreement, edit_ratio
from somna.relations import FORMER_NAMED, adds_unrelated, exclusive, relation
from somna.sleep.actions import Action
from somna.sleep.planning import Planning, newer
from somna.text import details, people


def contradiction_score(sim: float, overlap: float, cover: float, edit: float, bonus: float) -> float:
    """How sure the pass is that a newer memory contradicts an older one, on a 0..1 scale, plus the `bonus`
    of a correction (`details.disagreement`): the meaning (cosine), the words both use, how much of the
    older the newer repeats and, weighted most, how much of its word sequence it keeps, since a correction
    restates what it corrects ("The API runs on port 8080." -> "... port 9090."). Weights and thresholds
    chosen on letta-facts rows 0-149 only (bench/letta_contradictions.py), for the embedding of a note's
    text with its title once."""
    return (sim + 0.75 * overlap + 0.5 * cover + 2.0 * edit) / 4.25 + bonus


class Candidate(NamedTuple):
    """A pair that may be a contradiction, before its costly exact score is known: the edit ratio (difflib)
    is the costly part of a pair, so each pair first gets the score its upper bound allows, and the exact one
    only when it could matter (the plan is the same either way: checked action for action on the letta store
    and on the bench's 10k store)."""

    similarity: float
    found: Disagreement  # with the upper bound of the edit ratio

    @property
    def bound(self) -> float:
        return self.score(self.found.edit)

    def score(self, edit: float) -> float:
        found = self.found
        return contradiction_score(self.similarity, found.overlap, found.cover, edit, found.bonus)


class Way(NamedTuple):
    """One way round of a pair written at the same moment: which one is taken as the newer is arbitrary."""

    newer: int
    older: int
    candidate: Candidate


class Contradiction(NamedTuple):
    """A picked pair, by position: `newer` supersedes `older`, or (not `sure`) a person or the judge
    decides."""

    newer: int
    older: int
    score: float
    similarity: float
    why: str
    sure: bool = False
    update: bool = False  # an update of the same setting (relations.relation): what it hides is carried


class PairScore(NamedTuple):
    """A same-moment pair's exact score: the better of its two ways round (ties: the similarity, the why)."""

    score: float
    similarity: float
    why: str


@dataclass
class People:
    """A name that opens some memory is something memories are about (a person, a service), not a place both
    mention in passing; people named together in some memory know each other: a claim may move between
    them."""

    subjects: set[str] = field(default_factory=set)
    circle: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, texts: list[str]) -> People:
        found = cls()
        for text in texts:
            names = people(text)
            if names:
                found.subjects.add(names[0])
            for name in names if len(names) > 1 else ():
                found.circle.setdefault(name, set()).update(names)
        return found

    def acquainted(self, a: Claim, b: Claim) -> bool:
        return any(self.circle.get(name, set()) & b.names for name in a.names)


@dataclass
class Candidates:
    """What the candidate scan finds. `by_newer[newer][older]`: pairs whose newer memory is known; `unclear`:
    pairs written at the same moment, each way round it was seen (from either memory's neighbours)."""

    by_newer: dict[int, dict[int, Candidate]] = field(default_factory=dict)
    unclear: dict[frozenset[int], list[Way]] = field(default_factory=dict)


@dataclass
class Findings:
    """The picked pairs (by pair of positions), and the pairs too weak for a person's review queue but worth a
    question to the LLM judge, if there is one."""

    contradictions: dict[frozenset[int], Contradiction] = field(default_factory=dict)
    questions: dict[frozenset[int], Contradiction] = field(default_factory=dict)


def find_contradictions(context: Planning) -> Findings:
    found = candidates(context)
    findings = pick_by_newer(context, found.by_newer)
    pick_unclear(context, found.unclear, findings)
    find_updates(context, findings)
    return findings


UPDATE_FLOOR = 0.35  # cosine at which an update said in other words may still be paired with what it updates
WEAK_UPDATE = 0.6  # cosine an update needs when the older's value is only named as the former one
APART_VETO = True  # a pick about another subject or attribute is dropped


def find_updates(context: Planning, findings: Findings) -> None:
    """Updates (`relations.relation`): each changed memory's most similar older memory about the same subject
    that it gives a new value for, or says changed ("now", "moved to", "raised from 30 to 45"), supersedes it
    for sure, in place of any other pick of that memory; a pick about another subject or attribute ("unit
    tests" vs "integration tests") is dropped."""
    rows, active = context.rows, context.active
    best: dict[int, tuple[float, int, str]] = {}
    # an update replaces one memory: one that already replaced another is not made to replace more
    heirs = {r.successor for r in rows if r.successor}
    for i, j, similarity in context.pairs(min(UPDATE_FLOOR, context.thresholds.contradiction)):
        later = newer(rows[i], rows[j])
        if (i, j) in context.duplicates or later is None:
            continue
        n, o = (j, i) if later is rows[j] else (i, j)
        if not (active[n] and active[o]):
            continue
        new_text, old_text = context.snapshot.text(n), context.snapshot.text(o)
        if context.claim(n).names and context.claim(o).names:
            continue  # facts about people: who does what is the contradiction pass's to judge (`disagreement`)
        kind, why = relation(new_text, old_text)
        key = frozenset((n, o))
        if kind == "update" and rows[n].id in heirs:  # (later cycles would chain it onto look-alikes)
            findings.contradictions.pop(key, None), findings.questions.pop(key, None)
            continue
        weak = why.startswith(FORMER_NAMED) and similarity < WEAK_UPDATE
        if kind == "update" and not weak and similarity > best.get(n, (-1.0, -1, ""))[0]:
            best[n] = (similarity, o, why)
        elif (
            (kind == "apart" and APART_VETO)
            or (kind == "duplicate" and exclusive(old_text, new_text))  # a value of the older, dropped
            or (kind != "update" and adds_unrelated(new_text, old_text))
        ):
            findings.contradictions.pop(key, None)
            findings.questions.pop(key, None)
    for n, (similarity, o, why) in sorted(best.items()):
        for picks in (findings.contradictions, findings.questions):
            for key in [k for k, pick in picks.items() if pick.newer == n or n in k]:
                del picks[key]
        findings.contradictions[frozenset((n, o))] = Contradiction(
            n, o, 1.0, similarity, f"an update: {why}", sure=True, update=True
        )


def candidates(context: Planning) -> Candidates:
    """Each changed memory's neighbours at the contradiction floor or above, but not the ones merged with it,
    that may contradict it (`details.disagreement`), with their upper bound."""
    rows, thresholds = context.rows, context.thresholds
    known_people = People.of([context.snapshot.text(x) for x in range(len(rows))])
    found = Candidates()
    for i, j, similarity in context.pairs(thresholds.contradiction):
        if (i, j) in context.duplicates:
            continue
        # inactive rows stay candidates: a memory whose best match it already superseded is settled
        later = newer(rows[i], rows[j])
        n, o = (j, i) if later is rows[j] else (i, j)
        new, old = context.claim(n), context.claim(o)
        how = disagreement(new, old, known_people.acquainted(new, old), known_people.subjects, edit=False)
        if how is None:
            continue
        candidate = Candidate(similarity, how)
        if later is None:
            if candidate.bound < thresholds.maybe:
                continue  # a pair that cannot reach `maybe` is never queued, nor anyone's best match
            # each way round, from i's list and from j's: the better one counts
            found.unclear.setdefault(frozenset((i, j)), []).append(Way(n, o, candidate))
        else:
            found.by_newer.setdefault(n, {})[o] = candidate
    return found


def ranked(
    pool: list[int],
    bound: dict[int, float],
    score: Callable[[int], float],
    exact: dict[int, float],
    slack: float,
) -> list[int]:
    """The memories of `pool` scored exactly (into `exact`, by `score`), best bound first, while a bound
    reaches the best exact score less `slack`; those, best first (ties: the smaller position). Any other is
    further than `slack` below the best."""
    top = -1.0
    for o in sorted(pool, key=lambda o: (-bound[o], o)):
        if bound[o] < top - slack:
            break
        if o not in exact:
            exact[o] = score(o)
        top = max(top, exact[o])
    return sorted((o for o in pool if o in exact), key=lambda o: (-exact[o], o))


def exact_score(context: Planning, found: dict[int, Candidate], n: int, o: int) -> float:
    return found[o].score(edit_ratio(context.claim(n), context.claim(o)))


def pick_by_newer(context: Planning, by_newer: dict[int, dict[int, Candidate]]) -> Findings:
    """Each newer memory in use against its best match: superseded if sure, queued if only likely, put to the
    judge if weaker still. Each candidate's score has an upper bound; the exact one is computed, best bound
    first, only while a candidate could still be the best match or come within `margin` of it: the same pick
    and the same verdict as scoring them all (checked action for action on letta and the 10k store)."""
    rows, active, thresholds = context.rows, context.active, context.thresholds
    findings = Findings()
    for n, found in by_newer.items():
        if not active[n]:
            continue
        bound = {o: candidate.bound for o, candidate in found.items()}
        if not any(active[o] and b >= min(thresholds.ask, thresholds.maybe) for o, b in bound.items()):
            continue
        exact: dict[int, float] = {}
        score = functools.partial(exact_score, context, found, n)
        live = [o for o in found if active[o]]
        first = ranked(list(found), bound, score, exact, 0.0)[0]
        if not active[first]:
            # the best match is out of use already: superseded by this very memory in an earlier cycle (then
            # nothing is left to do), or the start of a chain of corrections whose newer links are active
            # candidates, and the newest of those may be what this memory corrects now (300 s, 600 s, 900 s)
            settled = rows[first]
            live = [o for o in live if newer(rows[o], settled) is rows[o]]
        if not live:
            continue
        best = ranked(live, bound, score, exact, thresholds.margin)
        o, top = best[0], exact[best[0]]
        # only memories still in use can be confused; one not scored exactly is further than `margin` below
        margin = top - (exact[best[1]] if len(best) > 1 else 0.0)
        picked = Contradiction(n, o, top, found[o].similarity, found[o].found.why)
        if top >= thresholds.maybe:
            sure = top >= thresholds.sure and margin >= thresholds.margin
            findings.contradictions[frozenset((n, o))] = picked._replace(sure=sure)
        elif top >= thresholds.ask:
            findings.questions[frozenset((n, o))] = picked
    return findings


def pick_unclear(context: Planning, unclear: dict[frozenset[int], list[Way]], findings: Findings) -> None:
    """Written at the same moment: which one holds is for a person (or the LLM judge) to say; only a pair that
    is each other's best match is worth their time. Scored exactly, best bound first, as above."""
    active, thresholds = context.active, context.thresholds
    scored: dict[frozenset[int], PairScore] = {}

    def pair_score(key: frozenset[int]) -> PairScore:
        if key not in scored:
            scored[key] = max(
                PairScore(
                    way.candidate.score(edit_ratio(context.claim(way.newer), context.claim(way.older))),
                    way.candidate.similarity,
                    way.candidate.found.why,
                )
                for way in unclear[key]
            )
        return scored[key]

    pair_bound = {key: max(way.candidate.bound for way in ways) for key, ways in unclear.items()}
    incident: dict[int, list[frozenset[int]]] = {}
    for key in unclear:
        for x in key:
            incident.setdefault(x, []).append(key)
    best: dict[int, frozenset[int]] = {}
    for x, keys in incident.items():
        lead: tuple[float, list[int]] | None = None  # the best score, then the smallest pair
        for key in sorted(keys, key=lambda k: (-pair_bound[k], sorted(k))):
            if lead is not None and pair_bound[key] < lead[0]:
                break
            here = (pair_score(key).score, sorted(key))
            if lead is None or (here[0], lead[1]) > (lead[0], here[1]):
                lead, best[x] = here, key
    for key in sorted(scored, key=sorted):
        a, b = sorted(key)
        pair = scored[key]
        if (
            active[a]
            and active[b]
            and pair.score >= thresholds.maybe
            and key not in findings.contradictions
            and best[a] == key
            and best[b] == key
        ):
            findings.contradictions[key] = Contradiction(a, b, pair.score, pair.similarity, pair.why)


def specifics(text: str) -> set[str]:
    """Paths, flags, code and identifiers: the details a correction rarely drops without replacing them."""
    found = details(text)
    return set(found.paths | found.flags | found.code)


def supersedes(
    context: Planning, findings: Findings, in_merge: set[int]
) -> tuple[list[Action], set[frozenset[int]]]:
    """A supersede for each picked pair that no merge takes, and those pairs."""
    rows = context.rows
    actions: list[Action] = []
    paired: set[frozenset[int]] = set()
    for key, pick in sorted(findings.contradictions.items(), key=lambda item: sorted(item[0])):
        if pick.newer in in_merge or pick.older in in_merge:
            continue
        paired.add(key)
        new, old = rows[pick.newer], rows[pick.older]
        known = newer(new, old) is not None
        sure, why = pick.sure, pick.why
        # The detail guard, for supersedes too: hiding the older would hide a path, flag, command or
        # identifier that the newer does not carry. That is more often a complement than a correction
        # ("... port 5433; see config/db.toml" vs "... port 5433, not the default port"): a person decides.
        hidden = sorted(specifics(old.body) - specifics(new.body))
        if hidden and not pick.update:  # an update carries what it hides (actions.apply_supersede)
            sure = False
            why = f"{why}; superseding would hide {hidden[:4]}"
        actions.append(
            Action(
                "supersede",
                f"{new.id} contradicts {old.id} ({why}); the newer one wins"
                if known
                else f"{new.id} and {old.id} disagree ({why}); which holds is unclear",
                {new.id: new.version, old.id: old.version},
                {
                    "similarity": round(pick.similarity, 3),
                    "score": round(pick.score, 3),
                    "why": why,
                    "newer": new.body[:200],
                    "older": old.body[:200],
                },
                {"new": new.id, "old": old.id, "since": new.created or new.updated},
                sure=sure,
            )
        )
    return actions, paired


def questions(
    context: Planning, findings: Findings, paired: set[frozenset[int]], in_merge: set[int]
) -> list[Action]:
    """A question for the judge about each weak pair, strongest first: not for a memory that already has its
    best match in a supersede, nor one that a sure one retires."""
    rows = context.rows
    known = [
        pick
        for key, pick in findings.contradictions.items()
        if key in paired and newer(rows[pick.newer], rows[pick.older]) is not None
    ]
    taken = {pick.newer for pick in known} | {pick.older for pick in known if pick.sure} | in_merge
    actions: list[Action] = []
    for pick in sorted(findings.questions.values(), key=lambda pick: (-pick.score, pick.newer, pick.older)):
        if pick.newer in taken or pick.older in taken:
            continue
        new, old = rows[pick.newer], rows[pick.older]
        actions.append(
            Action(
                "supersede",
                f"{new.id} may contradict {old.id} ({pick.why}): a question for the judge",
                {new.id: new.version, old.id: old.version},
                {
                    "similarity": round(pick.similarity, 3),
                    "score": round(pick.score, 3),
                    "why": pick.why,
                    "newer": new.body[:200],
                    "older": old.body[:200],
                },
                {
                    "new": new.id,
                    "old": old.id,
                    "since": new.created or new.updated,
                    "judge_only": True,
                },
                sure=False,
            )
        )
    return actions
