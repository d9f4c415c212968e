"""Text helpers that the core and sleep-time share: what a memory says that must never be lost, whether
two memories disagree, and how alike two texts are in words. Pure functions.

A *detail* is a token a person would hate to see summarised away: a number, a path, a flag, an
identifier in backticks or code style, a URL, a proper name. Merges keep every detail of every
member; compression that drops one is refused (the detail guard).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*(?:\s?(?:ms|s|m|h|d|kb|mb|gb|%|x))?(?![\w])", re.I)
# a path ends on a word character: the full stop closing a sentence is not part of it
PATH = re.compile(
    r"(?:~|\.{1,2})?/?(?:[\w.-]+/)+[\w.-]*[\w-]|[\w-]+\.(?:py|md|toml|yaml|yml|json|sh|txt|cfg|ini|lock|js|ts)\b"
)
FLAG = re.compile(r"(?<![\w-])--?[a-zA-Z][\w-]*")
CODE = re.compile(r"`([^`\n]{1,120})`")
URL = re.compile(r"https?://[^\s)>\]]+")
IDENT = re.compile(r"\b(?:[a-z]+_[a-z0-9_]+|[a-z]+[A-Z][A-Za-z0-9]+|[A-Z][A-Z0-9_]{2,})\b")
# a word of a name: "Ann", "McKinleigh", "DeMarco", "O'Brien"
_NAME_WORD = r"(?:[A-Z][a-z]+(?:[A-Z][a-z]+)?|O['’][A-Z][a-z]+)"
NAME = re.compile(rf"\b{_NAME_WORD}(?:\s+{_NAME_WORD})+\b")
NEGATION = re.compile(
    r"\b(?:not|never|no|don't|doesn't|isn't|aren't|won't|can't|cannot|without|avoid)\b", re.I
)
# words that mark a statement as a correction of another: the negations, and "instead", "only", "no longer"...
CONTRAST = re.compile(
    r"\b(?:not|never|no|none|nor|neither|nothing|nobody|don't|doesn't|didn't|isn't|"
    r"aren't|wasn't|weren't|won't|can't|cannot|without|avoid\w*|instead|rather|only|"
    r"exclusively|solely|dislikes?|longer|anymore|actually|but|however|unlike|while|whereas|"
    r"rarely|oppos\w*)\b",
    re.I,
)
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(\[])|\n+")
WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
FILLER = frozenset(
    "also just very which while both has have had who whom whose into onto their his her its "
    "they them there then than when will would can could should only".split()
)
STOP = frozenset(
    "a an the and or of to in on at for with by is are was were be been it this that as from".split()
)


@dataclass(frozen=True)
class Details:
    numbers: frozenset[str]
    paths: frozenset[str]
    flags: frozenset[str]
    code: frozenset[str]
    names: frozenset[str]
    negated: bool

    def all(self) -> frozenset[str]:
        return self.numbers | self.paths | self.flags | self.code


# Each text's parts are found once: a sleep cycle asks for the same memory's details, names and words pair
# after pair (some 40 neighbours each, several times per pair), and a regex scan per ask made it quadratic.
TEXTS = 1 << 15


@functools.lru_cache(maxsize=TEXTS)
def details(text: str) -> Details:
    code = {c.strip() for c in CODE.findall(text)} | set(URL.findall(text)) | set(IDENT.findall(text))
    names = set(people(text))
    return Details(
        numbers=frozenset(n.strip().lower() for n in NUMBER.findall(text)),
        paths=frozenset(PATH.findall(text)),
        flags=frozenset(FLAG.findall(text)),
        code=frozenset(code),
        names=frozenset(names),
        negated=bool(NEGATION.search(text)),
    )


def people(text: str) -> list[str]:
    """Proper names in the order they first appear: two or more capitalised words in a row, not opening with
    an article or the like. The first is most often what the text is about."""
    return list(_people(text))


@functools.lru_cache(maxsize=TEXTS)
def _people(text: str) -> tuple[str, ...]:
    found = (
        n for n in NAME.findall(text) if n.split()[0] not in ("The", "A", "An", "On", "In", "If", "When")
    )
    return tuple(dict.fromkeys(found))


def words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOP}


DUPLICATE_WORDS = 0.85  # share of their words two texts have in common, at which they are near-duplicates


def word_overlap(a: str, b: str) -> float:
    """How alike two texts are in words (Jaccard over `words`): the one word-level duplicate measure, used
    by a write's duplicate check when there are no vectors and by sleep-time's transcript pass."""
    wa, wb = words(a), words(b)
    return len(wa & wb) / max(1, len(wa | wb))


def missing(text: str, required: frozenset[str]) -> set[str]:
    """The details of `required` that `text` no longer carries."""
    return {d for d in required if d not in text}


def conflict(a: str, b: str) -> str | None:
    """Why two similar memories disagree, or None: both name different people or values for the same slot,
    or one negates what the other states."""
    da, db = details(a), details(b)
    if da.names and db.names and (da.names - db.names) and (db.names - da.names):
        return f"different names: {sorted(da.names - db.names)} vs {sorted(db.names - da.names)}"
    if da.numbers and db.numbers and (da.numbers - db.numbers) and (db.numbers - da.numbers):
        return f"different values: {sorted(da.numbers - db.numbers)} vs {sorted(db.numbers - da.numbers)}"
    wa, wb = content_words(a), content_words(b)
    if da.negated != db.negated and len(wa & wb) / max(1, len(wa | wb)) >= 0.4:
        return "one negates the other"
    only_a, only_b = wa - wb, wb - wa
    if only_a and only_b and len(wa & wb) >= max(2, len(wa | wb) // 3):
        return f"different claims: {sorted(only_a)[:4]} vs {sorted(only_b)[:4]}"
    return None


def same_frame(a: str, b: str) -> bool:
    """Whether two statements fill the same slot with different values: they open with the same words, the
    subject and what is said of it ("Ann and Bo co-founded a ...", "The API runs on port ..."), and end
    differently. With a name both share, the common opening must name it and carry three more words, one of
    them not a small one; without one, it must carry three words that are not small ones. Only the first
    line (the title) is compared."""
    ta = WORD.findall(a.strip().split("\n", 1)[0].lower())
    tb = WORD.findall(b.strip().split("\n", 1)[0].lower())
    p = 0
    while p < min(len(ta), len(tb)) and ta[p] == tb[p]:
        p += 1
    if p in (len(ta), len(tb)):
        return False  # one is the other with words added: a refinement, not another value
    names = {w for n in set(people(a)) & set(people(b)) for w in WORD.findall(n.lower())}
    opening = [w for w in ta[:p] if w.isalpha()]  # a stamp ("2023/05/20 (Sat) 14:02") is no subject
    rest = [w for w in opening if w not in names]
    if names and len(rest) < len(opening):
        return len(rest) >= 3 and any(w not in STOP for w in rest)
    return sum(w not in STOP for w in opening) >= 3


def corrects(new: str, old: str) -> bool:
    """Whether the newer statement carries a correction word ("not", "never", "instead", "actually"...) that
    the older does not."""
    return bool(CONTRAST.search(new)) and not CONTRAST.search(old)


def stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """The words that carry meaning, stemmed: what two claims are compared on."""
    return {stem(w) for w in words(text) if len(w) > 2 and w not in FILLER}


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(text) if s and s.strip()]


def merge_texts(texts: list[str]) -> str:
    """One text that keeps every distinct detail of every member: the fullest member, then each sentence
    of the others that adds a word or a detail it does not have yet."""
    base = max(texts, key=lambda t: (len(details(t).all()), len(t)))
    out = base.rstrip()
    have_words = words(out)
    for other in texts:
        if other is base:
            continue
        for sentence in sentences(other):
            new_words = words(sentence) - have_words
            new_details = missing(out, details(sentence).all())
            if new_details or len(new_words) >= 2:
                out += (" " if out.endswith((".", "!", "?")) else "\n") + sentence
                have_words |= words(sentence)
    return out.strip() + "\n"


def distinctive(text: str) -> list[str]:
    return list(_distinctive(text))


@functools.lru_cache(maxsize=TEXTS)
def _distinctive(text: str) -> tuple[str, ...]:
    d = details(text)
    found = {x for x in d.numbers | d.paths | d.flags | d.code if len(x) >= 2}  # "3" answers nothing
    return tuple(sorted(found, key=lambda x: (text.find(x), x)))


@functools.lru_cache(maxsize=TEXTS)
def _before(text: str, detail: str) -> frozenset[str]:
    """The content words just before a detail: where in the sentence the value sits ("port", "node")."""
    at = text.lower().find(detail.lower())
    if at < 0:
        return frozenset()
    words = [w for w in WORD.findall(text[:at].lower()) if w not in STOP]
    return frozenset(words[-2:])


def updated(old: str, new: str, detail: str) -> bool:
    """Whether `new` gives another value of the same kind in the place where `old` has `detail`."""
    slot = _before(old, detail)
    if not slot:
        return False
    kind_of = _kind(detail)
    for other in distinctive(new):
        if other.lower() in old.lower() or _kind(other) != kind_of:
            continue
        if _before(new, other) & slot:
            return True
    return False


@functools.lru_cache(maxsize=TEXTS)
def _kind(detail: str) -> str:
    if NUMBER.fullmatch(detail):
        return "number"
    return "path" if "/" in detail or re.search(r"\.\w{1,5}$", detail) else "other"


def _shape(detail: str) -> str:
    """A detail with its digits blurred: "24 h" and "12 h", "3.11.9" and "3.12.4" have one shape."""
    return re.sub(r"\d+", "9", detail.lower())


def replaced(old: str, new: str, detail: str) -> bool:
    """Whether `new`, an update of `old` (a pair already judged to be about one thing), gives another value
    for `detail`: in the same place of the sentence, or of the same shape ("24 h" -> "12 h")."""
    if updated(old, new, detail):
        return True
    shape = _shape(detail)
    return any(_shape(d) == shape and d.lower() not in old.lower() for d in distinctive(new))
