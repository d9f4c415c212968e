"""Claims: what the contradiction pass compares between two memories (who a memory is about, its words,
values and tone), how a newer claim may contradict an older one, and what a negation denies. Pure
functions over text.py's helpers.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from somna.text import CONTRAST, FILLER, STOP, TEXTS, WORD, content_words, details, people, stem

# a negation and the words it denies, up to the end of the clause: "has never [traveled outside of Vietnam]"
DENIAL = re.compile(
    r"\b(?:not|never|no|none|without|(?:do|does|did|is|are|was|were|has|have|had)n['’]t)\s+([^.,;:!?]+)", re.I
)


@dataclass(frozen=True)
class Claim:
    """What the contradiction pass compares: who a memory is about, its words, its values, its tone."""

    names: frozenset[str]
    numbers: frozenset[str]
    content: frozenset[str]
    contrast: bool
    order: tuple[str, ...]  # the names in the order they first appear: who does what to whom
    tokens: tuple[str, ...]  # every word in order, small ones too: a correction often edits its original
    denied: tuple[tuple[str, float], ...] = ()  # the words a negation in it denies, weighted (`denied`)
    stance: int = 0  # +1 it says someone likes something, -1 dislikes, 0 neither or both (`stance`)

    @classmethod
    def of(cls, text: str) -> Claim:
        d = details(text)
        order = tuple(people(text))
        return cls(
            d.names,
            d.numbers,
            frozenset(content_words(text)),
            bool(CONTRAST.search(text)),
            order,
            tuple(WORD.findall(text.lower())),
            denied(text),
            stance(text),
        )

    def same_as(self, other: Claim) -> bool:
        """No sign of disagreement that the word-level `conflict` misses: the same tone (no correction word on
        one side only) and the same roles (not "A hired B" against "B hired A")."""
        return self.contrast == other.contrast and (self.names != other.names or self.order == other.order)


class Disagreement(NamedTuple):
    """How a newer claim may contradict an older one."""

    overlap: float  # the share of their words the two have in common
    cover: float  # the share of the older's words the newer repeats
    edit: float  # how much of the word sequence the two share, or an upper bound of it (`edit_bound`)
    why: str
    bonus: float  # what a correction adds to the contradiction score


def disagreement(
    new: Claim,
    old: Claim,
    acquainted: bool = False,
    subjects: set[str] | None = None,
    *,
    edit: bool = True,
) -> Disagreement | None:
    """Whether `new` may contradict `old` on the same subject (how: a `Disagreement`), or None when they are
    about different subjects or the newer only adds to the older. Two memories that name people are about the
    same subject only if they share a name (one of `subjects`, when given: names that some memory is about,
    not a city both mention), or if the people are `acquainted` (named together elsewhere) and the rest of the
    two claims is the same: "Ann leads the payments team" against "Bob leads the payments team"."""
    common = new.names & old.names
    if subjects is not None:
        common &= subjects
    if new.names and old.names and not common:
        if not acquainted:
            return None
        people = {w for n in new.names | old.names for w in WORD.findall(n.lower())}
        rest_new, rest_old = new.content - people, old.content - people
        if len(rest_new & rest_old) < SAME_CLAIM * len(rest_new | rest_old):
            return None
    shared = new.content & old.content
    if not shared:
        return None
    overlap = len(shared) / len(new.content | old.content)
    cover = len(shared) / len(old.content)
    only_new, only_old = new.content - old.content, old.content - new.content
    bonus = 0.0
    if new.contrast and not old.contrast:
        why = "the newer corrects or negates the older"
        bonus = CORRECTS
        hit = [(w, weight) for w, weight in new.denied if w in old.content]
        if hit:  # and it denies what the older states: "has never traveled" against "enjoys traveling"
            why += f", denying {[w for w, _ in hit]}"
            bonus += DENIES * sum(weight for _, weight in hit)
        if new.stance * old.stance < 0:  # "dislikes outdoor activities" against "enjoys hiking"
            why += ", turning a liking around"
            bonus += TURNS
    elif new.stance * old.stance < 0:  # "has a strong aversion to ..." against "might enjoy ..."
        why = "the newer turns the older's liking around"
        bonus = TURNS
    elif old.contrast and not new.contrast:
        why = "the older negates what the newer states"
    elif new.names == old.names and new.order != old.order:
        why = f"the same people in other roles: {list(new.order)} vs {list(old.order)}"
    elif (new.names - old.names) and (old.names - new.names):
        why = f"different names: {sorted(new.names - old.names)} vs {sorted(old.names - new.names)}"
        if not new.names & old.names:
            why = "someone else for the same claim: " + why
    elif (new.numbers - old.numbers) and (old.numbers - new.numbers):
        why = f"different values: {sorted(new.numbers - old.numbers)} vs {sorted(old.numbers - new.numbers)}"
    elif only_new and only_old:
        why = f"different claims: {sorted(only_new)[:4]} vs {sorted(only_old)[:4]}"
    else:
        return None  # one says no more than the other: a duplicate or a refinement, not a contradiction
    # edit=False: a cheap upper bound of the edit ratio; the caller asks `edit_ratio` only where it matters
    ratio = edit_ratio(new, old) if edit else edit_bound(new, old)
    return Disagreement(overlap, cover, ratio, why, bonus)


def edit_ratio(new: Claim, old: Claim) -> float:
    """How much of their word sequence two claims share (difflib's ratio: 2 x matches / both lengths)."""
    return difflib.SequenceMatcher(None, new.tokens, old.tokens, autojunk=False).ratio()


def edit_bound(new: Claim, old: Claim) -> float:
    """An upper bound of `edit_ratio` from the words alone, in any order (difflib's quick_ratio)."""
    total = len(new.tokens) + len(old.tokens)
    if not total:
        return 1.0
    a, b = _counts(new.tokens), _counts(old.tokens)
    return 2.0 * sum(min(n, b[w]) for w, n in a.items() if w in b) / total  # (a & b) without a new Counter


@functools.lru_cache(maxsize=TEXTS)
def _counts(tokens: tuple[str, ...]) -> Counter[str]:
    return Counter(tokens)


CORRECTS = 0.25  # what a correction word adds to the contradiction score of a pair
DENIES = 0.2  # and what each word it denies that the older states adds, times the word's weight
TURNS = 0.2  # what a liking turned around (`stance`: "enjoys hiking" -> "dislikes the outdoors") adds
SAME_CLAIM = 0.5  # share of their other words two claims about different people must have in common


def denied(text: str) -> tuple[tuple[str, float], ...]:
    """The words a text denies, stemmed, each with a weight: the first four that carry meaning after each
    negation, the first (most often the verb denied: "never [traveled]") weighing most."""
    out: dict[str, float] = {}
    for scope in DENIAL.findall(text):
        kept = [
            stem(w)
            for w in WORD.findall(scope.lower())
            if len(w) > 2 and w not in FILLER and w not in STOP and w not in DENIED_SKIP
        ][:4]
        for pos, w in enumerate(kept):
            out[w] = max(out.get(w, 0.0), DENIED_WEIGHTS[pos])
    return tuple(sorted(out.items()))


# how someone feels about something: a liking, or its opposite. A pair about the same person where the
# newer turns the older's liking around is a correction even when the two share no other word ("enjoys
# hiking" -> "dislikes spending time outdoors"); the meaning (cosine) says whether it is the same liking.
LIKES = re.compile(r"\b(?:enjoy(?:s|ed)?|loves?|loved|likes?|liked|avid|fond|passionate|keen)\b", re.I)
DISLIKES = re.compile(
    r"\b(?:dislik\w*|hates?|hated|aversion|avoids?|avoided|detests?|loathes?|can['’]?t stand|"
    r"(?:do|does|did)(?:n['’]t| not) (?:like|enjoy|love)|not (?:a fan|fond|keen|interested))\b",
    re.I,
)


def stance(text: str) -> int:
    """+1 when a text says someone likes something and nothing of a dislike, -1 the other way round, else 0."""
    likes, dislikes = bool(LIKES.search(DISLIKES.sub(" ", text))), bool(DISLIKES.search(text))
    return int(likes) - int(dislikes) if likes != dislikes else 0


DENIED_SKIP = frozenset("any all ever more longer".split())
DENIED_WEIGHTS = (1.0, 0.75, 0.5, 0.25)


def denies(new: str, claim: str) -> bool:
    """Whether `new` says that what `claim` states is not so: the first word it denies, most often the verb
    ("has never [traveled]"), is a word of the claim ("has visited over 15 countries and enjoys traveling")."""
    said = {stem(w) for w in WORD.findall(claim.lower())}
    return any(weight >= DENIED_WEIGHTS[0] and word in said for word, weight in denied(new))
