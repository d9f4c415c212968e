"""How a query's two lists of candidates, by words (BM25) and by meaning (cosine), become one ranking, and
which words of a question the words side asks for. Pure functions: search.py picks the settings.

Search fuses by scores: each list divided by its best score, then weighted and added. Reciprocal rank
fusion (RRF) counts only ranks, so on a few hundred memories, where the two lists of 80 share most of
their members, any memory that both lists rank in their middle beat the one that BM25 alone ranked
second by far (LongMemEval-S: the fusion ranked the answer below BM25 alone; docs/benchmarks.md).
Divided by the best, a side that finds one memory far better than the rest keeps it on top.
"""

from __future__ import annotations

import math
import re

from somna.text import STOP

RRF_K = 60
# the words of a question that say it is a question, not what it is about ("how many ... did I ...")
ASKING = STOP | frozenset(
    "what which when where who whom whose why how many much did do does done i me my mine myself you your we "
    "our us can could would should will shall am have has had been being there any some".split()
)


def rrf(
    rankings: list[list[int]], k: int | None = None, weights: list[float] | None = None
) -> dict[int, float]:
    """Reciprocal rank fusion: each ranking adds weight / (k + rank) to the score of what it ranks (k:
    RRF_K, weights: 1 each)."""
    k = RRF_K if k is None else k
    fused: dict[int, float] = {}
    for n, ranking in enumerate(rankings):
        w = weights[n] if weights else 1.0
        for rank, key in enumerate(ranking):
            fused[key] = fused.get(key, 0.0) + w / (k + rank + 1)
    return fused


def fuse_scores(
    words: list[tuple[int, float]],
    vectors: list[tuple[int, float]],
    words_weight: float = 0.5,
    floor: str = "zero",
    scale: str = "range",
    missing: tuple[float, float] = (0.0, 0.0),
) -> dict[int, float]:
    """Each list's scores scaled over its candidates, then weighted and added: from 0 ("zero") or from the
    lowest candidate's score ("pool"), divided by the span to the best ("range") or by the spread ("std").

    A candidate of one list that the other lacks scores `missing` there (words, vectors): the last score of
    a list cut at its length (what it lacks scores no higher), 0 for a list that holds all that matched.
    Without it, a memory that the words find far ahead of the rest but that sits 81st by meaning would lose
    the whole weight of the vectors to every memory the vectors found middling."""
    fused: dict[int, float] = {}
    everyone = {r for r, _ in words} | {r for r, _ in vectors}
    for pairs, weight, fill in ((words, words_weight, missing[0]), (vectors, 1.0 - words_weight, missing[1])):
        if not pairs:
            continue
        have = dict(pairs)
        scores = [have.get(r, fill) for r in everyone]
        hi = max(scores)
        lo = 0.0 if floor == "zero" else min(scores)
        span = hi - lo
        if scale == "std":
            mean = sum(scores) / len(scores)
            span = math.sqrt(sum((sc - mean) ** 2 for sc in scores) / len(scores))
        for rowid in everyone:
            # below the floor (a negative cosine, from 0) is no evidence, not evidence against
            sc = max(have.get(rowid, fill), lo)
            fused[rowid] = fused.get(rowid, 0.0) + weight * ((sc - lo) / span if span > 0 else 1.0)
    return fused


def without_question_words(text: str) -> str:
    kept = [w for w in re.findall(r"\w+", text) if w.lower() not in ASKING]
    return " ".join(kept) if kept else text


def word_pairs(text: str) -> list[str]:
    """Successive words of a query, question words left out ("where did I get my guitar serviced" ->
    "get guitar", "guitar serviced"), for the words side to ask for as phrases too."""
    kept = [w for w in re.findall(r"\w+", text.lower())[:64] if w not in ASKING]
    return list(dict.fromkeys(f"{a} {b}" for a, b in zip(kept, kept[1:], strict=False)))[:32]
