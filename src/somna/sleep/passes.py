"""The deterministic passes of a sleep cycle: they read a snapshot and return actions; nothing is written here.

    duplicates     near-identical memories -> one merged memory that keeps every detail; originals archived
    contradictions similar memories that disagree -> the older superseded by the newer (or queued if unsure)
    stale          more harmful than helpful feedback -> archive (queued by default)
    links          related memories -> `related` in front matter
    fold           feedback events -> helpful / harmful counters in front matter
    blocks         a block over its size limit -> split into the block and a memory (queued by default)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from somna.index import Row
from somna.sleep.details import conflict, details, merge_texts, missing

INACTIVE = ("archived", "superseded")


@dataclass
class Thresholds:
    duplicate: float = 0.9
    contradiction: float = 0.72
    sure: float = 0.8
    link: float = 0.7
    max_links: int = 3


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
        return {"kind": self.kind, "rationale": self.rationale, "targets": self.targets,
                "evidence": self.evidence, "data": self.data, "sure": self.sure}


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


def _neighbours(snap: Snapshot, i: int, k: int = 8) -> list[tuple[int, float]]:
    sims = snap.matrix @ snap.matrix[i]
    sims[i] = -1.0
    top = np.argpartition(-sims, min(k, len(sims) - 1))[:k] if len(sims) > k else np.arange(len(sims))
    return sorted(((int(j), float(sims[j])) for j in top if sims[j] > 0), key=lambda x: -x[1])


def _newer(a: Row, b: Row) -> Row | None:
    ka, kb = (a.created or a.updated), (b.created or b.updated)
    if ka == kb:
        return None
    return a if ka > kb else b


def plan(snap: Snapshot, th: Thresholds) -> list[Action]:
    actions: list[Action] = []
    rows = snap.rows
    active = [r.status not in INACTIVE for r in rows]
    parent = list(range(len(rows)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    sims: dict[tuple[int, int], float] = {}
    contradictions: dict[frozenset[int], tuple[float, str]] = {}
    links: dict[int, list[tuple[int, float]]] = {}
    for i in sorted(snap.new):
        if not active[i]:
            continue
        best: tuple[int, float, str] | None = None
        for j, sim in _neighbours(snap, i):
            if not active[j]:
                continue
            if sim < th.contradiction:
                break
            why = conflict(snap.text(i), snap.text(j))
            if why:
                if best is None or sim > best[1]:
                    best = (j, sim, why)
            elif sim >= th.duplicate:
                sims[(min(i, j), max(i, j))] = sim
                parent[find(i)] = find(j)
            elif sim >= th.link and str(rows[j].id) not in _related(rows[i]):
                links.setdefault(i, []).append((j, sim))
        if best is not None:
            key = frozenset((i, best[0]))
            if key not in contradictions or contradictions[key][0] < best[1]:
                contradictions[key] = (best[1], best[2])

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
            actions.append(Action("merge", f"near-duplicates, but a merge would lose {sorted(lost)}",
                                  {r: rows[m].version for r, m in zip(ids, members, strict=True)},
                                  {"ids": ids}, {"text": merged}, sure=False))
            continue
        in_merge.update(members)
        pair_sims = {f"{rows[a].id}~{rows[b].id}": round(s, 3) for (a, b), s in sims.items() if a in members}
        base = max(members, key=lambda m: len(rows[m].body))
        actions.append(Action(
            "merge", f"{len(members)} memories say the same thing; one merged memory keeps every detail",
            {rows[m].id: rows[m].version for m in members},
            {"similarity": pair_sims, "quotes": {rows[m].id: rows[m].body[:200] for m in members}},
            {"text": merged, "title": rows[base].title, "type": rows[base].type,
             "tags": sorted({t for m in members for t in rows[m].tags})},
        ))

    for key, (sim, why) in contradictions.items():
        a, b = sorted(key)
        if a in in_merge or b in in_merge:
            continue
        newer = _newer(rows[a], rows[b])
        sure = newer is not None and sim >= th.sure
        new_i = (a if newer is rows[a] else b) if newer is not None else a
        old_i = b if new_i == a else a
        actions.append(Action(
            "supersede",
            f"{rows[new_i].id} contradicts {rows[old_i].id} ({why}); the newer one wins"
            if newer is not None else f"{rows[a].id} and {rows[b].id} disagree ({why}); which is newer is unclear",
            {rows[new_i].id: rows[new_i].version, rows[old_i].id: rows[old_i].version},
            {"similarity": round(sim, 3), "why": why, "newer": rows[new_i].body[:200], "older": rows[old_i].body[:200]},
            {"new": rows[new_i].id, "old": rows[old_i].id, "since": rows[new_i].created or rows[new_i].updated},
            sure=sure,
        ))

    for i, cands in links.items():
        if i in in_merge:
            continue
        chosen = [j for j, _ in sorted(cands, key=lambda x: -x[1])[: th.max_links] if j not in in_merge]
        if chosen:
            related = sorted(_related(rows[i]) | {rows[j].id for j in chosen})
            actions.append(Action("link", f"{rows[i].id} is related to {', '.join(rows[j].id for j in chosen)}",
                                  {rows[i].id: rows[i].version},
                                  {"similarity": {rows[j].id: round(s, 3) for j, s in cands}},
                                  {"related": related}))

    for row in rows:
        help_, harm, _ = snap.usage.get(row.id, (0, 0, ""))
        if help_ or harm:
            actions.append(Action("fold", f"fold feedback into {row.id}: +{help_} helpful, +{harm} harmful",
                                  {row.id: row.version}, {"events": {"helpful": help_, "harmful": harm}},
                                  {"helpful": row.helpful + help_, "harmful": row.harmful + harm,
                                   "until": snap.started}))
        total_help, total_harm = row.helpful + help_, row.harmful + harm
        if row.status not in INACTIVE and total_harm >= 2 and total_harm > total_help + 1:
            actions.append(Action("archive", f"{row.id} misled agents more than it helped "
                                  f"({total_harm} harmful, {total_help} helpful)", {row.id: row.version},
                                  {"helpful": total_help, "harmful": total_harm}))

    for row, limit in snap.blocks:
        if len(row.body) > limit:
            keep, rest = _split(row.body, limit)
            actions.append(Action("split", f"block {row.id} is {len(row.body)} characters, over its limit of {limit}",
                                  {row.id: row.version}, {"size": len(row.body), "limit": limit},
                                  {"keep": keep, "rest": rest}))
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
    rest = paras[len(keep):]
    return "\n\n".join(keep).strip() + "\n", "\n\n".join(rest).strip() + "\n"
