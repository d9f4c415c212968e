"""What the deterministic passes share: the snapshot they read, their thresholds, the actions they return, and
the planning context one plan() builds once and hands from pass to pass."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from somna.claims import Claim
from somna.errors import InvalidInput
from somna.index import Row
from somna.notes import INACTIVE
from somna.relations import CARRIED


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
    texts: dict[int, str] = field(default_factory=dict, repr=False)  # `text` of each row asked so far

    def text(self, i: int) -> str:
        """A memory's own words: without what a supersede carried into it from the memory it replaced
        ("Kept from <id>: ..."), which must not make it look like an update of yet another memory."""
        if i not in self.texts:
            self.texts[i] = f"{self.rows[i].title}\n{CARRIED.sub('', self.rows[i].body)}"
        return self.texts[i]


class DisjointSets:
    """Union-find over positions 0..n-1: which memories end up in one group."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.groups: dict[int, list[int]] = {}  # root -> its members, for groups of more than one

    def members(self, x: int) -> list[int]:
        """The positions in x's group, in order (found without a scan of all n)."""
        return self.groups.get(self.find(x), [x])

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb
            self.groups[rb] = sorted(self.groups.pop(rb, [rb]) + self.groups.pop(ra, [ra]))


def newer(a: Row, b: Row) -> Row | None:
    """The one of two memories written later, or None when both carry the same moment."""
    ka, kb = (a.created or a.updated), (b.created or b.updated)
    if ka == kb:
        return None
    return a if ka > kb else b


def neighbour_lists(snap: Snapshot, positions: list[int], k: int) -> dict[int, list[tuple[int, float]]]:
    """The k most similar rows of each row in `positions`, best first: one matrix product per block of rows,
    so a cycle over thousands of memories compares vectors in numpy, never pair by pair in Python."""
    out: dict[int, list[tuple[int, float]]] = {i: [] for i in positions}
    n = snap.matrix.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return out
    step = max(1, min(256, 4_000_000 // n))  # a block's similarities stay under 16 MB at any store size
    for start in range(0, len(positions), step):
        block = positions[start : start + step]
        sims = snap.matrix[block] @ snap.matrix.T
        sims[np.arange(len(block)), block] = -1.0
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        for r, i in enumerate(block):
            out[i] = sorted(
                ((int(j), float(sims[r, j])) for j in top[r] if sims[r, j] > 0), key=lambda x: (-x[1], x[0])
            )
    return out


@dataclass
class Planning:
    """What the passes of one plan() share: the snapshot, which rows are in use, each changed memory's nearest
    neighbours, the groups of near-duplicates (and their similarities) and the claims parsed so far."""

    snapshot: Snapshot
    thresholds: Thresholds
    active: list[bool]
    neighbours: dict[int, list[tuple[int, float]]]  # the changed memories in use, in position order
    groups: DisjointSets
    similarities: dict[tuple[int, int], float] = field(default_factory=dict)  # (smaller, larger) position
    duplicates: set[tuple[int, int]] = field(default_factory=set)  # (changed memory, neighbour) merged
    claims: dict[int, Claim] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Snapshot, thresholds: Thresholds) -> Planning:
        active = [r.status not in INACTIVE for r in snapshot.rows]
        changed = [i for i in sorted(snapshot.new) if active[i]]
        neighbours = neighbour_lists(snapshot, changed, thresholds.neighbours)
        return cls(snapshot, thresholds, active, neighbours, DisjointSets(len(snapshot.rows)))

    @property
    def rows(self) -> list[Row]:
        return self.snapshot.rows

    def claim(self, x: int) -> Claim:
        """The claim of the memory at position x, parsed once per plan."""
        if x not in self.claims:
            self.claims[x] = Claim.of(self.snapshot.text(x))
        return self.claims[x]

    def pairs(self, floor: float) -> list[tuple[int, int, float]]:
        """(changed memory, neighbour, cosine) for every neighbour at `floor` or above, in the order the
        changed memories and their neighbours come (best first): the order every pass adds what it finds."""
        return [
            (i, j, similarity)
            for i, near in self.neighbours.items()
            for j, similarity in near
            if similarity >= floor
        ]
