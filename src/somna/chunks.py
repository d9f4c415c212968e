"""A long memory in several vectors: the model reads the first 254 word pieces of a text, so without
more vectors the rest of a long memory (a long answer, a procedure, a note made from a transcript) would
be found by its words alone.

A memory's first vector is what it always was: its whole text, of which the model reads what fits (the
vector that sleep-time, the duplicate check and newer-first compare). A text longer than that gets more
vectors, one for each later window of it, each window within the model's reach and overlapping the one
before by OVERLAP pieces, with the memory's title in front (so a window about "it" still says what "it"
is). Search scores a memory by its best vector (vectors.py). Windows are measured in the word pieces of
MiniLM's own tokenizer (wordpiece.py), so only an embedder that says how many pieces it reads (`window`)
is given more than one text per memory.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from somna.wordpiece import WordPiece

SIZE = 254  # word pieces a later window holds, title included (at most what the model reads)
OVERLAP = 48  # pieces a window repeats of the one before, so a sentence cut at a border is whole in one
TITLE = True  # the memory's title in front of each later window
MAX_VECTORS = 64  # a memory's vectors at most (~9,000 words); the rest of a longer one is for BM25 alone


def scheme(window: int | None) -> str:
    """What the stored windows were cut by: a change of it cuts every long memory again."""
    return f"{window}/{SIZE}/{OVERLAP}/{int(TITLE)}/{MAX_VECTORS}" if window else ""


@cache
def _tokenizer() -> WordPiece:
    from somna.wordpiece import WordPiece  # the vocabulary loads once, when a long text is first cut

    return WordPiece()


@lru_cache(maxsize=65536)
def pieces(word: str) -> int:
    """How many word pieces the model makes of one whitespace-separated word."""
    from somna.wordpiece import normalize, pre_split

    tok = _tokenizer()
    return sum(len(tok.pieces(w)) for w in pre_split(normalize(word)))


def windows(title: str, text: str, window: int | None) -> list[str]:
    """The texts a memory is embedded from: `text` first (the model reads as much of it as fits), then,
    when `text` is longer than `window` pieces, its later windows."""
    # a piece is at least one character, so a text of `window` characters fits: most memories stop here
    if not window or len(text) <= window:
        return [text]
    spans = [(m.start(), m.end(), pieces(m.group())) for m in re.finditer(r"\S+", text)]
    before = [0]
    for _, _, n in spans:
        before.append(before[-1] + n)
    if before[-1] <= window:
        return [text]
    head = f"{title.strip()}\n" if TITLE and title.strip() else ""
    budget = max(OVERLAP * 2, min(SIZE, window) - sum(pieces(w) for w in head.split()))
    out = [text]
    # the first window starts where the first vector's reach ends, less the overlap
    i = next(k for k in range(len(spans)) if before[k + 1] > window - OVERLAP)
    while len(out) < MAX_VECTORS:
        end = i + 1
        while end < len(spans) and before[end + 1] - before[i] <= budget:
            end += 1
        out.append(head + text[spans[i][0] : spans[end - 1][1]])
        if end >= len(spans):
            break
        i += 1  # the next window starts OVERLAP pieces before this one ends, and after this one starts
        while i < end and before[i + 1] <= before[end] - OVERLAP:
            i += 1
    return out
