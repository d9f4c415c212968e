"""How two similar memories relate, from their words alone: a duplicate (the same claim in other words), an
update (a new value of the same setting of the same subject), or a look-alike (another subject or another
attribute that shares words or a value). Pure functions; the sleep passes use them (passes.py,
contradictions.py).

subject     two memories are about other subjects when each opens on a word the other never uses ("tidewatch
            ..." vs "quill ..."), or each qualifies a word both use with one of its own ("unit tests" vs
            "integration tests"); names of people are left to the contradiction pass (text.people)
values      what a memory pins down: numbers, paths, flags, code, identifiers, hyphenated terms
update      the newer gives another value for a value of the older (same place in the sentence or the same
            shape), and says so with a cue word ("now", "moved to", "raised from 30 to 45")
duplicate   neither gives a value the other lacks on both sides, and the newer carries no cue of change
"""

from __future__ import annotations

import re

from somna.text import FILLER, STOP, WORD, details, people, sentences, updated

# words with which a newer memory says that what an older one said changed
CUE = re.compile(
    r"\b(?:now|no longer|moved|switched|migrated|renamed|raised|lowered|bumped|changed|since|extended|"
    r"upgraded|downgraded|replaced|instead|anymore|any more|deprecated|from [^\s;]+ to)\b",
    re.I,
)
# a term: a word with a hyphen, an underscore, a dot, a slash or an at sign inside ("db-reset", "go.mod")
TERM = re.compile(r"(?<![\w@./-])[@\w][\w@]*(?:[-_./][\w@]+)+")
NAME_TERM = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)+")  # "ledger-api", "force-push": a name, not a value
UNIT = re.compile(r"\s?(?:ms|s|m|h|d|kb|mb|gb|%|x)$", re.I)
TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9']*|\S+")


def cue(text: str) -> bool:
    """Whether a text says that something changed ("now", "no longer", "moved to", "raised from X to Y")."""
    return bool(CUE.search(text))


def values(text: str) -> set[str]:
    """What a memory pins down, lower case: its numbers (without their unit), paths, flags, code spans,
    identifiers and hyphenated terms."""
    d = details(text)
    out = {UNIT.sub("", n).strip() for n in d.numbers}
    out |= {x.lower() for x in d.paths | d.flags | d.code}
    out |= {t.lower() for t in TERM.findall(text) if not NAME_TERM.fullmatch(t)}
    return {x.rstrip(".,;:") for x in out if x.rstrip(".,;:")}


def exclusive(a: str, b: str) -> set[str]:
    """The values of `a` that `b` does not carry (a number must be one of b's numbers, anything else appear
    in its text)."""
    lower = b.lower()
    numbers = {UNIT.sub("", n).strip() for n in details(b).numbers}
    out = set()
    for v in values(a):
        if re.fullmatch(r"[\d.,:]+", v):
            if v not in numbers:
                out.add(v)
        elif v not in lower:
            out.add(v)
    return out


def identifiers(a: str, b: str) -> set[str]:
    """The code spans, identifiers and terms of `a` that `b` does not carry: what names a thing ("`pnpm dev`",
    "test_webhook_retry_backoff", "session.timeout.ms"), not a value of it."""
    d = details(a)
    names = {x.lower() for x in d.code} | {t.lower() for t in TERM.findall(a) if re.search(r"[_.@]", t)}
    names = {x for x in names if not re.fullmatch(r"[\d.,:\s]+[a-z%]*", x) and not x.startswith("@")}
    return {x for x in names if x not in b.lower()}


def shape(value: str) -> str:
    """A value with its digits blurred: "invoices.v1" and "invoices.v2", "stg-db-2" and "stg-db-4"."""
    return re.sub(r"\d+", "9", value.lower())


# "from 30 to 45", "instead of squash", "no longer go through make deploy-staging": what the change replaces
FORMER = re.compile(r"\b(?:from|instead of|no longer|replac\w*|rather than)\s+((?:[^\s.,;:]+\s*){1,4})", re.I)


# "sample rate lowered to 0.2": the setting whose value changed, said just before the cue
CHANGED = re.compile(
    r"(\w+\s+\w+)\s+(?:was\s+|is\s+)?(?:raised|lowered|changed|moved|bumped|extended|switched)\b", re.I
)


def names_former(new: str, old: str) -> bool:
    """Whether the newer names what it replaces, and the older says it ("raised from 30 to 45" of "...: 30"),
    or names the setting that changed as the older does ("sample rate lowered to 0.2" of "sample rate is 1.0")."""
    lower = old.lower()
    if any(f" {phrase.lower()} " in f" {lower} " for phrase in CHANGED.findall(new)):
        return True
    for phrase in FORMER.findall(new):
        for word in phrase.split()[:4]:
            word = word.strip("`'\"()").lower()
            if len(word) > 1 and word not in STOP and word not in FILLER and word in lower:
                if re.fullmatch(r"[a-z]+", word) is None or re.search(rf"\b{re.escape(word)}\b", lower):
                    return True
    return False


def specific(a: str, b: str) -> set[str]:
    """The paths, flags, code and identifiers of `a` that `b` carries too: a claim both make in the same
    terms (numbers and plain words are not specific enough)."""
    d = details(a)
    lower = b.lower()
    return {x for x in d.paths | d.flags | d.code if len(x) >= 3 and not x.isalpha() and x.lower() in lower}


def _plain(text: str) -> list[str]:
    """The plain words of a text's first sentence in order, lower case; a term, a path or a code span is a
    break (None in effect: left out, and the words around it are not neighbours)."""
    first = sentences(text.strip())[:1]
    out: list[str] = []
    for tok in TOKEN.findall(first[0] if first else ""):
        word = tok.strip(".,;:!?()[]\"'`").lower()
        out.append(word if re.fullmatch(r"[a-z][a-z0-9']*", word) and tok.strip("`") == tok else "")
    return out


def _content(word: str) -> bool:
    return len(word) > 1 and word not in STOP and word not in FILLER and not CUE.fullmatch(word)


def other_subject(a: str, b: str) -> str | None:
    """Why two memories are about other subjects, or None: each opens on a word the other never uses, or
    each puts a word of its own before a word both use ("unit tests" vs "integration tests")."""
    wa, wb = set(WORD.findall(a.lower())), set(WORD.findall(b.lower()))
    names = {w for n in people(a) + people(b) for w in WORD.findall(n.lower())}
    pa, pb = _plain(a), _plain(b)
    first_a = next((w for w in pa if _content(w)), "")
    first_b = next((w for w in pb if _content(w)), "")
    if first_a and first_b and first_a not in wb and first_b not in wa and not {first_a, first_b} & names:
        return f"about {first_a!r} vs {first_b!r}"
    before_a = {w: p for p, w in zip(pa, pa[1:], strict=False) if _content(p) and _content(w)}
    before_b = {w: p for p, w in zip(pb, pb[1:], strict=False) if _content(p) and _content(w)}
    for w in sorted(set(before_a) & set(before_b)):
        x, y = before_a[w], before_b[w]
        if x != y and x not in wb and y not in wa and not {x, y} & names:
            return f"{x} {w} vs {y} {w}"
    return None


def replaces(new: str, old: str) -> list[str]:
    """The values of `old` that `new` gives another value for (the same place in the sentence or the same
    shape: "3.11.9" -> "3.12.4", "port 3001" -> "port 3030")."""
    shapes = {re.sub(r"\d", "9", v) for v in exclusive(new, old)}
    return sorted(
        d
        for d in exclusive(old, new)
        if updated(old, new, d) or (re.sub(r"\d", "9", d) in shapes and len(d) > 1)
    )


def relation(new: str, old: str) -> tuple[str, str]:
    """How a newer memory relates to an older similar one: ("apart", why) about another subject or another
    attribute, ("update", why) a new value or a change said with a cue word, ("duplicate", why) the same
    claim, or ("unclear", why)."""
    gone, came = exclusive(old, new), exclusive(new, old)
    moved = replaces(new, old)
    said = cue(new) and not cue(old)
    shapes = {shape(x) for x in identifiers(old, "")}
    named_old = {
        x for x in identifiers(old, new) - set(moved) if shape(x) not in {shape(y) for y in values(new)}
    }
    named_new = {x for x in identifiers(new, old) if shape(x) not in shapes}
    if named_old and named_new and not (said and (moved or names_former(new, old))):
        return "apart", f"other things named: {sorted(named_new)[:2]} vs {sorted(named_old)[:2]}"
    if not said and not (gone and came):
        return "duplicate", "the same claim" + (
            f"; one adds {sorted(gone | came)[:3]}" if gone | came else ""
        )
    why = other_subject(new, old)
    if why:
        return "apart", why
    if said and moved:
        return "update", f"another value for {moved[:3]}, said so"
    if said and names_former(new, old):
        return "update", "a change said with a cue word, of what the older says"
    return "unclear", f"other values: {sorted(came)[:3]} vs {sorted(gone)[:3]}"
