"""Browsing the index as a person does on the page: a page of memories by filters, newest change first, and
the feedback of each day. SQL on the index's connection, like index.py; the store offers it (`Store.browse`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somna import history, untrusted
from somna.errors import InvalidInput
from somna.index import Index, Row
from somna.notes import INACTIVE


@dataclass(frozen=True)
class Filters:
    """What a list of memories is narrowed to; None (or False) leaves that field free."""

    type: str | None = None
    status: str | None = None  # active, archived, superseded (or any other status a file names)
    source: str | None = None
    trust: str | None = None
    flagged: bool = False  # only memories whose text reads like instructions to an agent


def _where(f: Filters) -> tuple[str, list[Any]]:
    clauses, args = ["kind = 'memory'"], []
    if f.type:
        clauses.append("type = ?")
        args.append(f.type)
    if f.status == "active":
        clauses.append(f"status NOT IN ({', '.join('?' * len(INACTIVE))})")
        args += list(INACTIVE)
    elif f.status:
        clauses.append("status = ?")
        args.append(f.status)
    if f.source:
        clauses.append("source = ?")
        args.append(f.source)
    if f.trust:
        clauses.append("trust = ?")
        args.append(f.trust)
    return " AND ".join(clauses), args


def page(index: Index, filters: Filters, *, limit: int = 50, offset: int = 0) -> tuple[int, list[Row]]:
    """(how many match, the rows of this page without their bodies), the most recently updated first."""
    where, args = _where(filters)
    if filters.flagged:  # the flag is a reading of the text, not a column: read the texts, narrowed first
        rows = index.conn.execute(
            f"SELECT id, title, body FROM notes WHERE {where} ORDER BY updated DESC, id", args
        )
        ids = [i for i, title, body in rows if untrusted.flags(f"{title}\n{body}")]
        total, ids = len(ids), ids[offset : offset + limit]
    else:  # one pass over the table: the page and, beside each row, how many match
        sql = (
            f"SELECT id, count(*) OVER () FROM notes WHERE {where} ORDER BY updated DESC, id LIMIT ? OFFSET ?"
        )
        found_rows = index.conn.execute(sql, [*args, limit, offset]).fetchall()
        ids = [r[0] for r in found_rows]
        if found_rows:
            total = int(found_rows[0][1])
        else:  # past the last page
            total = int(index.conn.execute(f"SELECT count(*) FROM notes WHERE {where}", args).fetchone()[0])
    found = index.by_ids(ids)
    return total, [found[i] for i in ids if i in found]


def choices(index: Index) -> dict[str, list[str]]:
    """The values each filter can take in this store (types, statuses, sources, trust levels): one pass."""
    cols = ("type", "status", "source", "trust")
    out: dict[str, set[str]] = {col: set() for col in cols}
    for combo in index.conn.execute(f"SELECT DISTINCT {', '.join(cols)} FROM notes WHERE kind = 'memory'"):
        for col, value in zip(cols, combo, strict=True):
            if value and len(out[col]) < 200:
                out[col].add(value)
    return {col: sorted(values) for col, values in out.items()}


def feedback_by_day(index: Index) -> list[tuple[str, int, int]]:
    """(day, helpful, harmful) of the feedback agents gave, oldest day first."""
    sql = (
        "SELECT substr(at, 1, 10), sum(signal = 'helpful'), sum(signal = 'harmful') FROM state.feedback "
        "GROUP BY 1 ORDER BY 1"
    )
    return [(d, int(h or 0), int(x or 0)) for d, h, x in index.conn.execute(sql)]


def active_size(index: Index) -> tuple[int, int]:
    """(active memories, their characters): what an agent can still be shown."""
    sql = (
        f"SELECT count(*), coalesce(sum(length(body) + length(title)), 0) FROM notes WHERE kind = 'memory' "
        f"AND status NOT IN ({', '.join('?' * len(INACTIVE))})"
    )
    n, chars = index.conn.execute(sql, list(INACTIVE)).fetchone()
    return int(n), int(chars)


# -- the store's history, as a person browses it (git) ------------------------------------------------
def show_commit(root: Path, sha: str, limit: int = 400_000) -> str:
    """A commit as a person reads it: its message, the files it touched and its diff (cut at `limit`)."""
    if not re.fullmatch(r"[0-9a-f]{4,40}", sha):
        raise InvalidInput("a commit is 4 to 40 hex digits")
    out = history.git(
        root, "show", "--no-color", "--stat", "-p", "-U2", "--format=%H%n%an%n%aI%n%B", sha, check=False
    )
    return out[:limit]


def sizes_by_day(root: Path, folder: str, days: int = 60) -> list[tuple[str, int, int]]:
    """(day, files, bytes) under `folder` as each of the last `days` days with a commit ended, oldest first."""
    last: dict[str, str] = {}
    for line in history.git(root, "log", "--format=%H %aI", "--", folder, check=False).splitlines():
        sha, _, stamp = line.partition(" ")
        last.setdefault(stamp[:10], sha)  # newest first: the day's last commit comes first
    out = []
    for day in sorted(last)[-days:]:
        listing = history.git(root, "ls-tree", "-r", "-l", last[day], "--", folder, check=False).splitlines()
        sizes = [int(f[3]) for f in (x.split(None, 4) for x in listing) if len(f) > 3 and f[3].isdigit()]
        out.append((day, len(sizes), sum(sizes)))
    return out
