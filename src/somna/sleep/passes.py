"""The deterministic passes of a sleep cycle: they read a snapshot and return actions; nothing is written here.

duplicates     near-identical memories -> one merged memory that keeps every detail; originals archived
contradictions similar memories that disagree -> the older superseded by the newer (or queued if unsure)
stale          more harmful than helpful feedback -> archive (queued by default)
links          related memories -> `related` in front matter
fold           feedback events -> helpful / harmful counters in front matter
blocks         a block over its size limit -> split into the block and a memory (queued by default)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from somna.errors import InvalidInput
from somna.index import Row
from somna.sleep.actions import Action
from somna.text import (
    Claim,
    conflict,
    details,
    disagreement,
    edit_ratio,
    merge_texts,
    missing,
    people,
)

INACTIVE = ("archived", "superseded")


@dataclass
class Thresholds:
    duplicate: float = 0.9
    contradiction: float = 0.4  # cosine floor: a pair below it is never compared for a contradiction
    sure: float = 0.55  # contradiction score at which the newer memory supersedes the older without review
    maybe: float = 0.5  # contradiction score at which the pair is queued for review instead
    margin: float = 0.04  # a sure pick must beat the newer memory's next candidate by this much
    ask: float = (
        0.35  # contradiction score at which a pair is put to the LLM judge (when a model is configured)
    )
    link: float = 0.7
    max_links: int = 3
    neighbours: int = 40  # the nearest memories each changed memory is compared with


def thresholds_from(values: dict[str, Any], where: str = "somna.toml") -> Thresholds:
    """`[sleep.thresholds]` of a config as Thresholds; a name somna does not know, or a count that is not a
    whole number, is a clear error, not a traceback at the start of a cycle."""
    known = {f.name: f.type for f in fields(Thresholds)}
    for key, value in values.items():
        if key not in known:
            raise InvalidInput(f"{where}: sleep.thresholds has no {key!r}; known: {', '.join(known)}")
        if known[key] == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidInput(f"{where}: sleep.thresholds.{key} must be a whole number of at least 1")
    return Thresholds(**values)


@dataclass
class Snapshot:
    head: str | None
    rows: list[Row]
    matrix: Any  # numpy array, one normalised vector per row
    new: set[int]  # positions of rows changed since the last cycle
    usage: dict[str, tuple[int, int, str]]
    blocks: list[tuple[Row, int]] = field(default_factory=list)
    started: str = ""

    def text(self, i: int) -> str:
        return f"{self.rows[i].title}\n{self.rows[i].body}"


def _neighbour_lists(snap: Snapshot, idxs: list[int], k: int) -> dict[int, list[tuple[int, float]]]:
    """The k most similar rows of each row in `idxs`, best first: one matrix product per block of rows, so a
    cycle over thousands of memories compares vectors in numpy, never pair by pair in Python."""
    out: dict[int, list[tuple[int, float]]] = {i: [] for i in idxs}
    n = snap.matrix.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return out
    step = max(1, min(256, 4_000_000 // n))  # a block's similarities stay under 16 MB at any store size
    for start in range(0, len(idxs), step):
        block = idxs[start : start + step]
        sims = snap.matrix[block] @ snap.matrix.T
        sims[np.arange(len(block)), block] = -1.0
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for r, i in enumerate(block):
            out[i] = sorted(
                ((int(j), float(sims[r, j])) for j in top[r] if sims[r, j] > 0), key=lambda x: (-x[1], x[0])
            )
    return out


def contradiction_score(sim: float, overlap: float, cover: float, edit: float, bonus: float) -> float:
    """How sure the pass is that a newer memory contradicts an older one, on a 0..1 scale, plus the `bonus`
    of a correction (`details.disagreement`): the meaning (cosine), the words both use, how much of the
    older the newer repeats and, weighted most, how much of its word sequence it keeps, since a correction
    restates what it corrects ("The API runs on port 8080." -> "... port 9090."). Weights and thresholds
    chosen on letta-facts rows 0-149 only (bench/letta_contradictions.py), for the embedding of a note's
    text with its title once."""
    return (sim + 0.75 * overlap + 0.5 * cover + 2.0 * edit) / 4.25 + bonus


def _specifics(text: str) -> set[str]:
    """Paths, flags, code and identifiers: the details a correction rarely drops without replacing them."""
    d = details(text)
    return set(d.paths | d.flags | d.code)


def _ranked(
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


class DisjointSets:
    """Union-find over positions 0..n-1: which memories end up in one group."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _newer(a: Row, b: Row) -> Row | None:
    ka, kb = (a.created or a.updated), (b.created or b.updated)
    if ka == kb:
        return None
    return a if ka > kb else b


def plan(snap: Snapshot, th: Thresholds) -> list[Action]:
    actions: list[Action] = []
    rows = snap.rows
    active = [r.status not in INACTIVE for r in rows]
    sets = DisjointSets(len(rows))
    find = sets.find

    sims: dict[tuple[int, int], float] = {}
    links: dict[int, list[tuple[int, float]]] = {}
    claims: dict[int, Claim] = {}

    def claim(x: int) -> Claim:
        if x not in claims:
            claims[x] = Claim.of(snap.text(x))
        return claims[x]

    # a name that opens some memory is something memories are about (a person, a service), not a place both
    # mention in passing; people named together in some memory know each other: a claim may move between them
    subjects: set[str] = set()
    circle: dict[str, set[str]] = {}
    for x in range(len(rows)):
        names = people(snap.text(x))
        if names:
            subjects.add(names[0])
        for name in names if len(names) > 1 else ():
            circle.setdefault(name, set()).update(names)

    def acquainted(a: Claim, b: Claim) -> bool:
        return any(circle.get(name, set()) & b.names for name in a.names)

    # pending[newer][older] = (similarity, overlap, cover, edit bound, why, bonus): the exact score is computed
    # later, where it matters; pairs written at the same moment go to `unclear`, (newer, older) either way
    unclear: dict[frozenset[int], list[tuple[int, int, float, float, float, float, str, float]]] = {}
    pending: dict[int, dict[int, tuple[float, float, float, float, str, float]]] = {}
    todo = [i for i in sorted(snap.new) if active[i]]
    floor = min(th.contradiction, th.link, th.duplicate)
    for i, near in _neighbour_lists(snap, todo, th.neighbours).items():
        for j, sim in near:
            if sim < floor:
                break
            if (
                active[j]
                and sim >= th.duplicate
                and conflict(snap.text(i), snap.text(j)) is None
                and claim(i).same_as(claim(j))
            ):
                sims[(min(i, j), max(i, j))] = sim
                sets.union(i, j)
                continue
            if active[j] and sim >= th.link and str(rows[j].id) not in _related(rows[i]):
                links.setdefault(i, []).append((j, sim))
            if sim < th.contradiction:
                continue
            # inactive rows stay candidates: a memory whose best match it already superseded is settled
            newer = _newer(rows[i], rows[j])
            n, o = (j, i) if newer is rows[j] else (i, j)
            found = disagreement(claim(n), claim(o), acquainted(claim(n), claim(o)), subjects, edit=False)
            if found is None:
                continue
            # The edit ratio (difflib) is the costly part of a pair: each pair first gets the score its upper
            # bound allows, and the exact one only when it could matter (the plan is the same either way:
            # checked action for action on the letta store and on the bench's 10k store).
            overlap, cover, bound, why, bonus = found
            if contradiction_score(sim, overlap, cover, bound, bonus) < th.maybe and newer is None:
                continue  # a pair that cannot reach `maybe` is never queued, nor anyone's best match
            if newer is None:  # each way round, from i's list and from j's: the better one counts
                unclear.setdefault(frozenset((i, j)), []).append(
                    (n, o, sim, overlap, cover, bound, why, bonus)
                )
            else:
                pending.setdefault(n, {})[o] = (sim, overlap, cover, bound, why, bonus)

    def exact_score(n: int, o: int) -> float:
        sim, ov, cv, _, _, bonus = pending[n][o]
        return contradiction_score(sim, ov, cv, edit_ratio(claim(n), claim(o)), bonus)

    contradictions: dict[frozenset[int], tuple[int, int, float, float, str, bool]] = {}
    # below `maybe`: too weak for a person's review queue, worth a question to the LLM judge, if there is one
    ask: dict[frozenset[int], tuple[int, int, float, float, str]] = {}
    for n, found in pending.items():
        if not active[n]:
            continue
        # Each candidate's score has an upper bound (`edit_bound`); the exact one is computed, best bound first,
        # only while a candidate could still be the best match or come within `margin` of it: the same pick
        # and the same verdict as scoring them all (checked action for action on letta and the 10k store).
        bound = {
            o: contradiction_score(sim, ov, cv, bd, bonus) for o, (sim, ov, cv, bd, _, bonus) in found.items()
        }
        if not any(active[o] and b >= min(th.ask, th.maybe) for o, b in bound.items()):
            continue
        exact: dict[int, float] = {}
        of = functools.partial(exact_score, n)
        live = [o for o in found if active[o]]
        first = _ranked(list(found), bound, of, exact, 0.0)[0]
        if not active[first]:
            # the best match is out of use already: superseded by this very memory in an earlier cycle (then
            # nothing is left to do), or the start of a chain of corrections whose newer links are active
            # candidates, and the newest of those may be what this memory corrects now (300 s, 600 s, 900 s)
            settled = rows[first]
            live = [o for o in live if _newer(rows[o], settled) is rows[o]]
        if not live:
            continue
        ranked = _ranked(live, bound, of, exact, th.margin)
        o, top = ranked[0], exact[ranked[0]]
        # only memories still in use can be confused; one not scored exactly is further than `margin` below
        margin = top - (exact[ranked[1]] if len(ranked) > 1 else 0.0)
        sim, why = found[o][0], found[o][4]
        if top >= th.maybe:
            sure = top >= th.sure and margin >= th.margin
            contradictions[frozenset((n, o))] = (n, o, top, sim, why, sure)
        elif top >= th.ask:
            ask[frozenset((n, o))] = (n, o, top, sim, why)
    # written at the same moment: which one holds is for a person (or the LLM judge) to say; only a pair that
    # is each other's best match is worth their time. Scored exactly, best bound first, as above.
    scored: dict[frozenset[int], tuple[float, float, str]] = {}

    def pair_score(key: frozenset[int]) -> tuple[float, float, str]:
        if key not in scored:
            scored[key] = max(
                (contradiction_score(sim, ov, cv, edit_ratio(claim(n), claim(o)), bonus), sim, why)
                for n, o, sim, ov, cv, _, why, bonus in unclear[key]
            )
        return scored[key]

    pair_bound = {
        key: max(contradiction_score(sim, ov, cv, bd, bonus) for _, _, sim, ov, cv, bd, _, bonus in ways)
        for key, ways in unclear.items()
    }
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
            here = (pair_score(key)[0], sorted(key))
            if lead is None or (here[0], lead[1]) > (lead[0], here[1]):
                lead, best[x] = here, key
    for key in sorted(scored, key=sorted):
        a, b = sorted(key)
        score, sim, why = scored[key]
        if (
            active[a]
            and active[b]
            and score >= th.maybe
            and key not in contradictions
            and best[a] == key
            and best[b] == key
        ):
            contradictions[key] = (a, b, score, sim, why, False)

    clusters: dict[int, list[int]] = {}
    for i in range(len(rows)):
        clusters.setdefault(find(i), []).append(i)
    in_merge: set[int] = set()
    for members in clusters.values():
        if len(members) < 2:
            continue
        texts = [rows[m].body for m in members]
        merged = merge_texts(texts)
        lost = set().union(*(missing(merged, details(t).all()) for t in texts))
        ids = [rows[m].id for m in members]
        if lost:
            actions.append(
                Action(
                    "merge",
                    f"near-duplicates, but a merge would lose {sorted(lost)}",
                    {r: rows[m].version for r, m in zip(ids, members, strict=True)},
                    {"ids": ids},
                    {"text": merged},
                    sure=False,
                )
            )
            continue
        in_merge.update(members)
        pair_sims = {f"{rows[a].id}~{rows[b].id}": round(s, 3) for (a, b), s in sims.items() if a in members}
        base = max(members, key=lambda m: len(rows[m].body))
        actions.append(
            Action(
                "merge",
                f"{len(members)} memories say the same thing; one merged memory keeps every detail",
                {rows[m].id: rows[m].version for m in members},
                {"similarity": pair_sims, "quotes": {rows[m].id: rows[m].body[:200] for m in members}},
                {
                    "text": merged,
                    "title": rows[base].title,
                    "type": rows[base].type,
                    "tags": sorted({t for m in members for t in rows[m].tags}),
                },
            )
        )

    paired: set[frozenset[int]] = set()
    for key, found in sorted(contradictions.items(), key=lambda x: sorted(x[0])):
        new_i, old_i, score, sim, why, sure = found
        if new_i in in_merge or old_i in in_merge:
            continue
        paired.add(key)
        known = _newer(rows[new_i], rows[old_i]) is not None
        # The detail guard, for supersedes too: hiding the older would hide a path, flag, command or
        # identifier that the newer does not carry. That is more often a complement than a correction
        # ("... port 5433; see config/db.toml" vs "... port 5433, not the default port"): a person decides.
        hidden = sorted(_specifics(rows[old_i].body) - _specifics(rows[new_i].body))
        if hidden:
            sure = False
            why = f"{why}; superseding would hide {hidden[:4]}"
        actions.append(
            Action(
                "supersede",
                f"{rows[new_i].id} contradicts {rows[old_i].id} ({why}); the newer one wins"
                if known
                else f"{rows[new_i].id} and {rows[old_i].id} disagree ({why}); which holds is unclear",
                {rows[new_i].id: rows[new_i].version, rows[old_i].id: rows[old_i].version},
                {
                    "similarity": round(sim, 3),
                    "score": round(score, 3),
                    "why": why,
                    "newer": rows[new_i].body[:200],
                    "older": rows[old_i].body[:200],
                },
                {
                    "new": rows[new_i].id,
                    "old": rows[old_i].id,
                    "since": rows[new_i].created or rows[new_i].updated,
                },
                sure=sure,
            )
        )

    # not for a memory that already has its best match in a supersede, nor one that a sure one retires
    known = [
        c for k, c in contradictions.items() if k in paired and _newer(rows[c[0]], rows[c[1]]) is not None
    ]
    taken = {c[0] for c in known} | {c[1] for c in known if c[5]} | in_merge
    for new_i, old_i, score, sim, why in sorted(ask.values(), key=lambda x: (-x[2], x[0], x[1])):
        if new_i in taken or old_i in taken:
            continue
        actions.append(
            Action(
                "supersede",
                f"{rows[new_i].id} may contradict {rows[old_i].id} ({why}): a question for the judge",
                {rows[new_i].id: rows[new_i].version, rows[old_i].id: rows[old_i].version},
                {
                    "similarity": round(sim, 3),
                    "score": round(score, 3),
                    "why": why,
                    "newer": rows[new_i].body[:200],
                    "older": rows[old_i].body[:200],
                },
                {
                    "new": rows[new_i].id,
                    "old": rows[old_i].id,
                    "since": rows[new_i].created or rows[new_i].updated,
                    "judge_only": True,
                },
                sure=False,
            )
        )

    for i, cands in links.items():
        if i in in_merge:
            continue
        cands = [(j, s) for j, s in cands if frozenset((i, j)) not in paired]
        chosen = [j for j, _ in sorted(cands, key=lambda x: -x[1])[: th.max_links] if j not in in_merge]
        if chosen:
            related = sorted(_related(rows[i]) | {rows[j].id for j in chosen})
            actions.append(
                Action(
                    "link",
                    f"{rows[i].id} is related to {', '.join(rows[j].id for j in chosen)}",
                    {rows[i].id: rows[i].version},
                    {"similarity": {rows[j].id: round(s, 3) for j, s in cands}},
                    {"related": related},
                )
            )

    for row in rows:
        help_, harm, _ = snap.usage.get(row.id, (0, 0, ""))
        if help_ or harm:
            actions.append(
                Action(
                    "fold",
                    f"fold feedback into {row.id}: +{help_} helpful, +{harm} harmful",
                    {row.id: row.version},
                    {"events": {"helpful": help_, "harmful": harm}},
                    {"helpful": row.helpful + help_, "harmful": row.harmful + harm, "until": snap.started},
                )
            )
        total_help, total_harm = row.helpful + help_, row.harmful + harm
        if row.status not in INACTIVE and total_harm >= 2 and total_harm > total_help + 1:
            actions.append(
                Action(
                    "archive",
                    f"{row.id} misled agents more than it helped "
                    f"({total_harm} harmful, {total_help} helpful)",
                    {row.id: row.version},
                    {"helpful": total_help, "harmful": total_harm},
                )
            )

    for row, limit in snap.blocks:
        if len(row.body) > limit:
            keep, rest = _split(row.body, limit)
            actions.append(
                Action(
                    "split",
                    f"block {row.id} is {len(row.body)} characters, over its limit of {limit}",
                    {row.id: row.version},
                    {"size": len(row.body), "limit": limit},
                    {"keep": keep, "rest": rest},
                )
            )
    return actions


def _related(row: Row) -> set[str]:
    return set(row.related)


def _split(body: str, limit: int) -> tuple[str, str]:
    paras = body.split("\n\n")
    keep: list[str] = []
    size = 0
    for p in paras:
        if size + len(p) + 2 > limit * 0.8 and keep:
            break
        keep.append(p)
        size += len(p) + 2
    rest = paras[len(keep) :]
    return "\n\n".join(keep).strip() + "\n", "\n\n".join(rest).strip() + "\n"
