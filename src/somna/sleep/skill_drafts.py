"""What the skill pass needs besides the model: the procedures that recur often enough to be worth a skill,
the details a drafted skill must keep, and the SKILL.md text of a draft.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from somna.notes import INACTIVE
from somna.sleep.actions import AUTHOR
from somna.sleep.planning import DisjointSets, Snapshot
from somna.sleep.prompts import SkillDraft
from somna.text import details

PROCEDURAL = ("procedure", "lesson", "fix")
MIN_RECUR = 3  # memories that describe one procedure before it is worth a skill
MAX_SOURCES = 8
MAX_POOL = 2000


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


def recurring_details(bodies: list[str]) -> frozenset[str]:
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
