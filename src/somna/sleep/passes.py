"""The deterministic passes of a sleep cycle: they read a snapshot and return actions, and write nothing.

duplicates     near-identical memories -> one merged memory that keeps every detail; originals archived
contradictions similar memories that disagree -> the older superseded by the newer (or queued if unsure)
stale          more harmful than helpful feedback -> archive (queued by default)
links          related memories -> `related` in front matter
fold           feedback events -> helpful / harmful counters in front matter
blocks         a block over its size limit -> split into the block and a memory (queued by default)

plan() runs them in this module, the contradictions pass in contradictions.py; what they share (the
snapshot, the thresholds, the actions, the planning context) is in planning.py.
"""

from __future__ import annotations

from somna.index import Row
from somna.notes import INACTIVE
from somna.relations import ADDS, relation, specific
from somna.sleep.actions import Action
from somna.sleep.contradictions import contradiction_score, find_contradictions, questions, supersedes
from somna.sleep.planning import (
    DisjointSets,
    Planning,
    Snapshot,
    Thresholds,
    newer,
    thresholds_from,
)
from somna.text import conflict, details, merge_texts, missing

# what the cycle, the LLM passes and the bench import from here
__all__ = [
    "DisjointSets",
    "Snapshot",
    "Thresholds",
    "contradiction_score",
    "plan",
    "thresholds_from",
]


def plan(snap: Snapshot, th: Thresholds) -> list[Action]:
    context = Planning.of(snap, th)
    find_duplicates(context)
    links = link_candidates(context)
    findings = find_contradictions(context)
    actions, in_merge = merges(context)
    supersede_actions, paired = supersedes(context, findings, in_merge)
    actions += supersede_actions
    actions += questions(context, findings, paired, in_merge)
    actions += link_actions(context, links, paired, in_merge)
    actions += fold_and_stale(snap)
    actions += splits(snap)
    return actions


def find_duplicates(context: Planning) -> None:
    """Near-identical memories that do not disagree in any way: grouped (`context.groups`) for one merge, and
    kept out of the link and contradiction passes (`context.duplicates`)."""
    active = context.active
    for i, j, similarity in context.pairs(context.thresholds.contradiction):
        if not active[j]:
            continue
        a, b = context.snapshot.text(i), context.snapshot.text(j)
        same = similarity >= context.thresholds.duplicate and (
            conflict(a, b) is None and context.claim(i).same_as(context.claim(j))
        )
        same = same or (reworded(context, i, j, similarity) and _joinable(context, i, j))
        if same:
            context.similarities[(min(i, j), max(i, j))] = similarity
            context.duplicates.add((i, j))
            context.groups.union(i, j)


def _joinable(context: Planning, i: int, j: int) -> bool:
    """Whether every memory of i's group says the same as every memory of j's: a chain of rewordings is not
    one claim."""
    find = context.groups.find
    if find(i) == find(j):
        return True
    ours = sorted(context.groups.members(i) + context.groups.members(j))
    texts = {x: context.snapshot.text(x) for x in ours}

    def duplicate(x: int, y: int) -> bool:  # asked of the newer about the older, as reworded() asks it
        new, old = (y, x) if newer(context.rows[x], context.rows[y]) is context.rows[y] else (x, y)
        return relation(texts[new], texts[old])[0] == "duplicate"

    return all(duplicate(x, y) for x in ours for y in ours if x < y and find(x) != find(y))


REWORDED = 0.8  # cosine at which two memories that pin down nothing apart may be the same claim reworded
# cosine at which two memories that pin down no value the other lacks, on either side, may be one claim
# reworded (the word-level check still has to find them alike)
REWORDED_PLAIN = 0.6


def reworded(context: Planning, i: int, j: int, similarity: float) -> bool:
    """Two memories below the duplicate threshold that still make the same claim in other words: neither gives
    a value that the other lacks on both sides, the newer says nothing changed, and they share a path, a flag,
    code or an identifier (or, sharing none, are similar from REWORDED, from REWORDED_PLAIN when neither adds a
    value, and the word-level check finds the same claim)."""
    a, b = context.snapshot.text(i), context.snapshot.text(j)
    if context.claim(i).names and context.claim(j).names:
        return False  # facts about people said in other words are more often other facts about them
    later = newer(context.rows[i], context.rows[j])
    new, old = (b, a) if later is context.rows[j] else (a, b)
    kind, why = relation(new, old)
    if kind != "duplicate":
        return False
    if specific(a, b) or specific(b, a):
        return True
    # sharing none: only what the word-level check finds alike too (a person's fact said in other words is
    # more often another fact about them); below REWORDED, only when neither adds a value to the other
    floor = REWORDED if ADDS in why else REWORDED_PLAIN
    return similarity >= floor and conflict(a, b) is None and context.claim(i).same_as(context.claim(j))


def link_candidates(context: Planning) -> dict[int, list[tuple[int, float]]]:
    """Each changed memory's neighbours in use, similar enough to link and not linked yet, best first; not the
    ones merged with it."""
    rows, active = context.rows, context.active
    links: dict[int, list[tuple[int, float]]] = {}
    for i, j, similarity in context.pairs(context.thresholds.link):
        if (i, j) not in context.duplicates and active[j] and str(rows[j].id) not in _related(rows[i]):
            links.setdefault(i, []).append((j, similarity))
    return links


def merges(context: Planning) -> tuple[list[Action], set[int]]:
    """One merge for each group of near-duplicates, and the memories merged. A merge that would lose a detail
    is proposed for review instead (its memories stay free for the other passes)."""
    rows = context.rows
    actions: list[Action] = []
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(context.groups.find(i), []).append(i)
    in_merge: set[int] = set()
    similarities: dict[int, dict[str, float]] = {}  # by group, in the order they were found
    for (a, b), s in context.similarities.items():
        similarities.setdefault(context.groups.find(a), {})[f"{rows[a].id}~{rows[b].id}"] = round(s, 3)
    for root, members in groups.items():
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
        similarity = similarities.get(root, {})
        base = max(members, key=lambda m: len(rows[m].body))
        actions.append(
            Action(
                "merge",
                f"{len(members)} memories say the same thing; one merged memory keeps every detail",
                {rows[m].id: rows[m].version for m in members},
                {"similarity": similarity, "quotes": {rows[m].id: rows[m].body[:200] for m in members}},
                {
                    "text": merged,
                    "title": rows[base].title,
                    "type": rows[base].type,
                    "tags": sorted({t for m in members for t in rows[m].tags}),
                },
            )
        )
    return actions, in_merge


def link_actions(
    context: Planning,
    links: dict[int, list[tuple[int, float]]],
    paired: set[frozenset[int]],
    in_merge: set[int],
) -> list[Action]:
    """`related` for each changed memory: its `max_links` most similar candidates, not one it is paired with
    in a supersede, nor one that a merge takes."""
    rows = context.rows
    actions: list[Action] = []
    for i, found in links.items():
        if i in in_merge:
            continue
        candidates = [(j, s) for j, s in found if frozenset((i, j)) not in paired]
        chosen = [
            j
            for j, _ in sorted(candidates, key=lambda x: -x[1])[: context.thresholds.max_links]
            if j not in in_merge
        ]
        if chosen:
            related = sorted(_related(rows[i]) | {rows[j].id for j in chosen})
            actions.append(
                Action(
                    "link",
                    f"{rows[i].id} is related to {', '.join(rows[j].id for j in chosen)}",
                    {rows[i].id: rows[i].version},
                    {"similarity": {rows[j].id: round(s, 3) for j, s in candidates}},
                    {"related": related},
                )
            )
    return actions


def fold_and_stale(snap: Snapshot) -> list[Action]:
    """Feedback events folded into each memory's counters, and an archive for a memory in use that misled
    agents more than it helped (counting the events folded now)."""
    actions: list[Action] = []
    for row in snap.rows:
        helped, harmed, _ = snap.usage.get(row.id, (0, 0, ""))
        if helped or harmed:
            actions.append(
                Action(
                    "fold",
                    f"fold feedback into {row.id}: +{helped} helpful, +{harmed} harmful",
                    {row.id: row.version},
                    {"events": {"helpful": helped, "harmful": harmed}},
                    {"helpful": row.helpful + helped, "harmful": row.harmful + harmed, "until": snap.started},
                )
            )
        total_help, total_harm = row.helpful + helped, row.harmful + harmed
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
    return actions


def splits(snap: Snapshot) -> list[Action]:
    """A block over its size limit: split into the block and a memory."""
    actions: list[Action] = []
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
