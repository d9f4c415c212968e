"""What a supersede carries: when a newer memory replaces an older one (sleep/actions.apply_supersede), the
older's details that the newer neither says nor renews are appended to the newer ("Kept from <id>: ..."), so
the update hides nothing, and never the outdated value. Pure functions over the words of the two texts; how
two memories relate in the first place is relations.py's.
"""

from __future__ import annotations

import re

from somna.relations import NAME_TERM, NUMERIC, UNIT, exclusive, holds, number_shape, shape
from somna.text import STOP, WORD, details, distinctive, people, replaced, sentences


def renewed(old: str, new: str, detail: str) -> bool:
    """Whether `new`, an update of `old` (a pair already judged to be about one setting), gives another value
    for `detail`: `text.replaced`, or a number inside it ("http://localhost:3001", "go 1.21") has a new value
    of its shape in `new` ("3030", "1.22.5"), or `new` names it as what it replaces ("from 30 to 45")."""
    if replaced(old, new, detail):
        return True
    strip = {UNIT.sub("", n).strip() for n in details(old).numbers}
    fresh = {
        number_shape(n) for n in (UNIT.sub("", x).strip() for x in details(new).numbers) if n not in strip
    }
    if any(number_shape(x) in fresh for x in re.findall(r"\d+(?:\.\d+)*", detail)):
        return True
    if re.search(r"\d", detail) and shape(detail) in {shape(v) for v in exclusive(new, old)}:
        return True  # "invoices.v1" -> "invoices.v2", "stg-db-2" -> "stg-db-4"
    return any(
        re.fullmatch(rf"(?:from|instead of)\s+`?{re.escape(detail)}`?", m, re.I)
        for m in re.findall(r"\b(?:from|instead of)\s+\S+", new, re.I)
    )


def carried(old: str, new: str) -> list[str]:
    """What a supersede must carry into the newer memory so that nothing is hidden: each clause of `old`
    holding details that `new` lacks and does not renew, whole ("Frontend builds now use Node 22." keeps
    "run `nvm use` first" of "The frontend builds use Node 20; run `nvm use` first.", not "Node 20"); of a
    clause that `new` updates (it renews one of its values), only the details it lacks, in code style
    ("`.github/workflows/ci.yml`" of "the `integration` job in .github/workflows/ci.yml has timeout-minutes:
    30" raised "from 30 to 45"), never the outdated value."""
    out: list[str] = []
    clauses = [c.strip(" ;") for sentence in sentences(old) for c in sentence.split(";")]
    for at, clause in enumerate(clauses):
        if clause in clauses[:at]:
            continue  # the title said again as the body's first line
        found = distinctive(clause)
        lost = [d for d in found if not holds(new, d)]
        # the names of the first clause, the claim, are what the newer restates or renews ("ArtConnect" ->
        # "Creative Horizons"); a later clause's are details it may drop ("brings up Redis and MinIO")
        named = [n for n in product_names(clause) if not holds(new, n) and (at or found)]
        if not lost and not (named and not found):
            if named:  # the claim the newer restates: only the names it drops
                item = ", ".join(f"`{n}`" for n in named)
                out += [item] if item not in out else []
            continue
        gone = [d for d in found if renewed(old, new, d)]
        if not gone:
            if clause not in out:
                out.append(clause)
            continue
        named = [n for n in named if not renewed(old, new, n)]
        rest = [f"`{d}`" for d in lost + named if d not in gone and not NUMERIC.fullmatch(d)]
        if rest and ", ".join(rest) not in out:
            out.append(", ".join(rest))
    return out


def product_names(text: str) -> list[str]:
    """The names of tools, services and places a clause mentions: a capitalised word that does not open it
    with a capital inside ("MinIO", "LaunchDarkly") and a term with a digit ("stg-eu1")."""
    words = re.findall(
        r"(?<![\w`/.-])(?:[A-Za-z][\w-]*\d[\w-]*|[A-Z][a-z]+[A-Z][A-Za-z]*)(?![\w-]|\.\w)", text
    )
    persons = {w for n in people(text) for w in n.split()}  # "Diana McKinleigh" is a person, not a tool
    return list(
        dict.fromkeys(
            w for w in words if (not NAME_TERM.fullmatch(w) or re.search(r"\d", w)) and w not in persons
        )
    )


def updates_any(old: str, new: str) -> bool:
    """Whether `new` renews any value that `old` states: an update of it, not a memory about something else."""
    return any(renewed(old, new, d) for d in distinctive(old))


def word_updated(old: str, new: str, word: str) -> bool:
    """Whether `new` puts another word where `old` has `word`: one the older does not use, after the same
    words ("deploys with heroku" -> "deploys with fly")."""
    old_words = [w for w in WORD.findall(old.lower()) if w not in STOP]
    if word not in old_words:
        return False
    at = old_words.index(word)
    slot = set(old_words[max(0, at - 2) : at])
    new_words = [w for w in WORD.findall(new.lower()) if w not in STOP]
    return any(
        w not in old_words and slot & set(new_words[max(0, i - 2) : i]) for i, w in enumerate(new_words)
    )
