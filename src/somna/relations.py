"""How two similar memories relate, from their words alone: a duplicate (the same claim in other words), an
update (a new value of the same setting of the same subject), or a look-alike (another subject or another
attribute that shares words or a value). Pure functions, for the sleep passes, the exam and a write's check.

subject     two memories are about other subjects when each opens on a word the other never uses ("tidewatch
            ..." vs "quill ..."), or each qualifies a word both use with one of its own ("unit tests" vs
            "integration tests"); names of people are left to the contradiction pass (text.people)
values      what a memory pins down: numbers, paths, flags, code, identifiers, hyphenated terms
update      the newer gives another value for a value of the older (same place in the sentence or the same
            shape), and says so with a cue word ("now", "moved to", "raised from 30 to 45")
duplicate   neither gives a value the other lacks on both sides, and the newer carries no cue of change
"""

from __future__ import annotations

import difflib
import functools
import re

from somna.text import FILLER, STOP, TEXTS, WORD, details, people, sentences, updated

# what a supersede appended to the newer memory from the older (actions.apply_supersede): not its own words
CARRIED = re.compile(r"(?m)^Kept from [\w.-]+: .*$\n?")
# words with which a newer memory says that what an older one said changed
CUE = re.compile(
    r"(?<![.\w])(?:now|no longer|moved|switched|migrated|renamed|raised|lowered|bumped|changed|since|extended|"
    r"upgraded|downgraded|replaced|instead|anymore|any more|deprecated|from [^\s;]+ to)\b",
    re.I,
)
# a term: a word with a hyphen, an underscore, a dot, a slash or an at sign inside ("db-reset", "go.mod")
TERM = re.compile(r"(?<![\w@./-])[@\w][\w@]*(?:[-_./][\w@]+)+")
NAME_TERM = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)+")  # "ledger-api", "force-push": a name, not a value
UNIT = re.compile(r"\s?(?:ms|s|m|h|d|kb|mb|gb|%|x)$", re.I)
TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9']*|\S+")


@functools.lru_cache(maxsize=TEXTS)  # each text's parts once, not once per pair: see text.TEXTS
def cue(text: str) -> bool:
    """Whether a text says that something changed ("now", "no longer", "moved to", "raised from X to Y")."""
    return bool(CUE.search(text))


@functools.lru_cache(maxsize=TEXTS)
def values(text: str) -> frozenset[str]:
    """What a memory pins down, lower case: its numbers (without their unit), paths, flags, code spans,
    identifiers and hyphenated terms."""
    d = details(text)
    out = {UNIT.sub("", n).strip() for n in d.numbers}
    out |= {x.lower() for x in d.paths | d.flags | d.code}
    out |= {t.lower() for t in TERM.findall(text) if not NAME_TERM.fullmatch(t)}
    out |= {SPELLED[w.lower()] for w in COUNT.findall(text)}
    return frozenset(x.rstrip(".,;:") for x in out if x.rstrip(".,;:"))


@functools.lru_cache(maxsize=TEXTS)  # relation() asks it of one pair several times
def exclusive(a: str, b: str) -> frozenset[str]:
    """The values of `a` that `b` does not carry (a number must be one of b's numbers, anything else appear
    in its text)."""
    lower = b.lower()
    numbers = {UNIT.sub("", n).strip() for n in details(b).numbers}
    numbers |= {SPELLED[w.lower()] for w in COUNT.findall(b)}  # "1 approval" is in "one approval"
    out = set()
    for v in values(a):
        if re.fullmatch(r"[\d.,:]+", v):
            if v not in numbers:
                out.add(v)
        elif v not in lower:
            out.add(v)
    return frozenset(out)


SPELLED = {w: str(n) for n, w in enumerate("zero one two three four five six seven eight nine ten".split())}
# a number spelled out as a count of something ("one approval", "three languages"), not "no one", "one of"
NOT_A_COUNT = "".join(rf"(?<!\b{w} )" for w in "no any some the every each this that".split())
COUNT = re.compile(
    NOT_A_COUNT + rf"\b({'|'.join(SPELLED)})\s+(?!(?:of|or|and|to|by|at|in)\b)[a-z]{{3,}}\b", re.I
)


def identifiers(a: str, b: str) -> set[str]:
    """The code spans, identifiers and terms of `a` that `b` does not carry: what names a thing ("`pnpm dev`",
    "test_webhook_retry_backoff", "session.timeout.ms"), not a value of it."""
    return {x for x in _names(a) if x not in b.lower()}


@functools.lru_cache(maxsize=TEXTS)
def _names(a: str) -> frozenset[str]:
    d = details(a)
    names = {x.lower() for x in d.code | d.paths} | {
        t.lower() for t in TERM.findall(a) if re.search(r"[_.@]", t)
    }
    return frozenset(x for x in names if not re.fullmatch(r"[\d.,:\s]+[a-z%]*", x) and not x.startswith("@"))


@functools.lru_cache(maxsize=TEXTS)
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


@functools.lru_cache(maxsize=TEXTS)
def _plain(text: str) -> tuple[str, ...]:
    """The plain words of a text's first sentence in order, lower case; a term, a path or a code span is a
    break (None in effect: left out, and the words around it are not neighbours)."""
    first = sentences(text.strip())[:1]
    out: list[str] = []
    for tok in TOKEN.findall(first[0] if first else ""):
        word = tok.strip(".,;:!?()[]\"'`").lower()
        out.append(word if re.fullmatch(r"[a-z][a-z0-9']*", word) and tok.strip("`") == tok else "")
    return tuple(out)


def _content(word: str) -> bool:
    return len(word) > 1 and word not in STOP and word not in FILLER and not CUE.fullmatch(word)


def other_subject(a: str, b: str) -> str | None:
    """Why two memories are about other subjects, or None: each opens on a word the other never uses, or
    each puts a word of its own before a word both use ("unit tests" vs "integration tests")."""
    wa, wb = _words(a), _words(b)
    names = {w for n in people(a) + people(b) for w in WORD.findall(n.lower())}
    pa, pb = _plain(a), _plain(b)
    first_a = next((w for w in pa if _content(w)), "")
    first_b = next((w for w in pb if _content(w)), "")
    if first_a and first_b and first_a not in wb and first_b not in wa and not {first_a, first_b} & names:
        return f"about {first_a!r} vs {first_b!r}"
    tools_a, tools_b = _tools(a), _tools(b)
    if tools_a and tools_b and not tools_a & tools_b and not (cue(a) or cue(b)):
        only_a, only_b = tools_a - wb, tools_b - wa
        if only_a and only_b:  # "Redis" vs "Postgres": a change of tool would say so ("moved to", "now")
            return f"about {sorted(only_a)[0]!r} vs {sorted(only_b)[0]!r}"
    before_a, before_b = _qualified(a), _qualified(b)
    for w in sorted(before_a.keys() & before_b.keys()):
        x, y = before_a[w], before_b[w]
        if x != y and x not in wb and y not in wa and not {x, y} & names:
            return f"{x} {w} vs {y} {w}"
    return None


@functools.lru_cache(maxsize=TEXTS)
def _words(text: str) -> frozenset[str]:
    return frozenset(WORD.findall(text.lower()))


@functools.lru_cache(maxsize=TEXTS)
def _qualified(text: str) -> dict[str, str]:  # (read only: cached) each word of the opening that follows one
    plain = _plain(text)
    return {w: p for p, w in zip(plain, plain[1:], strict=False) if _content(p) and _content(w)}


@functools.lru_cache(maxsize=TEXTS)
def _tools(text: str) -> frozenset[str]:
    """The names of tools and services a text uses, lower case: a capitalised word that does not open a
    sentence ("Redis", "Postgres", "Metabase")."""
    out = set()
    for sentence in sentences(text.strip()):
        words = TOKEN.findall(sentence)
        out |= {w.lower() for w in words[1:] if re.fullmatch(r"[A-Z][A-Za-z0-9]{2,}", w)}
    return frozenset(out - STOP)


def replaces(new: str, old: str) -> list[str]:
    """The values of `old` that `new` gives another value for: a value with a digit, in the same place of
    the sentence or of the same shape ("3.11.9" -> "3.12.4", "port 3001" -> "port 3030"), or holding a number
    that `new` gives another of ("http://localhost:3001" -> "3030"); a setting written key=value only by a
    value of the same key ("max_connections=50" is not replaced by "--timeout=120"). And the keys to which
    `new` gives another value ("LOG_LEVEL=warn" of "reads LOG_LEVEL; default is info")."""
    fresh = exclusive(new, old)
    shapes = {re.sub(r"\d", "9", v) for v in fresh}
    numbers = {number_shape(v) for v in fresh if NUMERIC.fullmatch(v)}
    keys = {v.split("=", 1)[0] for v in fresh if "=" in v}
    keyed = {_key(new, v) for v in fresh} - {""}  # the settings the newer gives values of, written key=value
    out = {
        d
        for d in exclusive(old, new)
        if (re.search(r"\d", d) or (cue(new) and _renamed(d, fresh)))
        and ("=" not in d or d.split("=", 1)[0] in keys)
        and (not keyed or _key(old, d) in keyed | {""})
        and (
            updated(old, new, d)
            or (re.sub(r"\d", "9", d) in shapes and len(d) > 1 and _same_unit(old, new, d, fresh))
            or any(
                number_shape(x) in numbers and _same_unit(old, new, x, fresh)
                for x in re.findall(r"\d+(?:\.\d+)*", d)
                if len(x) > 1
            )
        )
    }
    for key, value in keyed_values(new):
        if re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", old) and f"{key}={value}" not in old:
            out.add(key)
    return sorted(out)


def _same_unit(old: str, new: str, number: str, fresh: frozenset[str]) -> bool:
    """Whether a number of `old` has the unit (the word after it, or none) of a number of its shape in `new`:
    "5000 ms" is no former value of "port 3030"; "localhost:3001" is."""
    plain = r"\d+(?:\.\d+)*"
    if not re.fullmatch(plain, number):
        return True  # a version, a path, a term: its shape says enough
    units = _units_of(old, number)
    return any(number_shape(x) == number_shape(number) and units & _units_of(new, x) for x in fresh
               if re.fullmatch(plain, x))  # fmt: skip


def _units_of(text: str, number: str) -> set[str]:  # the word said right after a number, or ""
    return {u.lower() for u in re.findall(rf"(?<![\w.]){re.escape(number)}(?![\w.]\d)\s?([A-Za-z%]*)", text)}


def _renamed(value: str, fresh: frozenset[str]) -> bool:
    """Whether a path or a command has a close variant among the newer's values ("docker-compose.dev.yml" ->
    "compose.dev.yaml"): the same thing renamed, not another thing."""
    return bool(re.search(r"[/. ]", value)) and any(
        difflib.SequenceMatcher(None, value, other).ratio() >= RENAMED for other in fresh
    )


RENAMED = 0.7


@functools.lru_cache(maxsize=TEXTS)
def _key(text: str, value: str) -> str:
    """The setting a value is written for ("timeout-minutes: 30", "--timeout=120"), or ""."""
    found = re.search(rf"([A-Za-z][\w.-]*)\s*[:=]\s*`?{re.escape(value)}(?!\w|\.\d)", text)
    return found.group(1).lstrip("-").lower() if found else ""


KEYED = re.compile(r"\b([A-Za-z_][\w.-]*[A-Za-z_])=([^\s,;)]+)")
keyed_values = functools.lru_cache(maxsize=TEXTS)(KEYED.findall)  # (read only: cached)


def former(new: str, old: str) -> list[str]:
    """Values both say that the newer gives a fresh value of the same shape beside ("pins golangci-lint
    v1.59.1 (v1.55.2 panics ...)"): a weaker sign of an update, the older value named as the former one."""
    shapes = {re.sub(r"\d", "9", v) for v in exclusive(new, old)}
    both = values(old) - exclusive(old, new)
    return sorted(d for d in both if re.search(r"\d", d) and len(d) > 2 and re.sub(r"\d", "9", d) in shapes)


FORMER_NAMED = "the older value named as the former"


def relation(new: str, old: str) -> tuple[str, str]:
    """How a newer memory relates to an older similar one: ("apart", why) about another subject or another
    attribute, ("update", why) a new value or a change said with a cue word, ("duplicate", why) the same
    claim, or ("unclear", why)."""
    gone, came = exclusive(old, new), exclusive(new, old)
    moved = replaces(new, old)
    said = cue(new) and not cue(old)
    shapes, new_shapes = {shape(x) for x in identifiers(old, "")}, {shape(y) for y in values(new)}
    named_old = {x for x in identifiers(old, new) - set(moved) if shape(x) not in new_shapes}
    named_new = {x for x in identifiers(new, old) if shape(x) not in shapes}
    if named_old and named_new and not (said and (moved or names_former(new, old))):
        return "apart", f"other things named: {sorted(named_new)[:2]} vs {sorted(named_old)[:2]}"
    if not said and not (gone and came):
        return "duplicate", "the same claim" + (f"; {ADDS} {sorted(gone | came)[:3]}" if gone | came else "")
    why = other_subject(new, old)
    if why:
        return "apart", why
    if said and moved:
        return "update", f"another value for {moved[:3]}, said so"
    if said and former(new, old):
        return "update", f"{FORMER_NAMED}: {former(new, old)[:3]}"
    if said and names_former(new, old):
        return "update", "a change said with a cue word, of what the older says"
    if said and (came or gone) and identifiers_shared(new, old):
        return "update", "a change said with a cue word, of a thing both name"
    return "unclear", f"other values: {sorted(came)[:3]} vs {sorted(gone)[:3]}"


NUMERIC = re.compile(r"[\d.,:]+(?:\s?[a-z%]+)?", re.I)
ADDS = "one adds"  # how relation() says that one of two duplicates pins down a value the other lacks


def holds(text: str, detail: str) -> bool:
    """Whether `text` carries `detail`; a number only as a whole number ("100" is not in "1000")."""
    if NUMERIC.fullmatch(detail):
        return re.search(rf"(?<![\w.]){re.escape(detail)}(?!\w|\.\d)", text, re.I) is not None
    return detail.lower() in text.lower()


def number_shape(number: str) -> str:
    """A number's shape, each digit blurred, a version's parts after the second left out: "1.21" and "1.22.5"
    are alike, "6379" and "86400" are not."""
    head = re.match(r"\d+(?:\.\d+)?", number)
    return re.sub(r"\d", "9", head.group(0) if head else number)


def identifiers_shared(a: str, b: str) -> set[str]:
    """The identifiers and code of `a` (with an underscore, a dot or a capital inside: `new_checkout`) that `b`
    names too: the same thing, whatever else differs."""
    d = details(a)
    return {x for x in d.code if re.search(r"[_.]|[a-z][A-Z]", x) and len(x) >= 4 and x.lower() in b.lower()}


def adds_unrelated(new: str, old: str) -> bool:
    """Whether the newer pins down values the older does not have and none of them replaces one of the older's,
    with no cue of change: a fact about something else ("Prod deploys only Tuesday to Thursday, before 15:00"
    is no correction of "Check #deploys before investigating a prod alert")."""
    return bool(exclusive(new, old)) and not replaces(new, old) and not cue(new)


def differ(a: str, b: str) -> str | None:
    """Why two alike texts are two memories, or None: one pins down a value the other lacks (a number, a
    version, a path, a flag, an identifier: "port 5432" vs "port 5433"), or they give the same numbers in
    another order ("writer 1 item 3" vs "writer 3 item 1"). The one measure of "not a duplicate" that a
    write's duplicate check and sleep-time share."""
    only_a, only_b = exclusive(a, b), exclusive(b, a)
    if only_a or only_b:
        return f"other values: {sorted(only_a)[:3]} vs {sorted(only_b)[:3]}"
    seq_a, seq_b = NUMBERS.findall(a), NUMBERS.findall(b)
    if sorted(seq_a) == sorted(seq_b) and seq_a != seq_b:
        return f"the same values in another order: {seq_a[:4]} vs {seq_b[:4]}"
    return None


NUMBERS = re.compile(r"(?<![\w.])\d+(?:\.\d+)*(?![\w.]\d)")
