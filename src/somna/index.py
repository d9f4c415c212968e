"""The derived index (index.db, rebuildable from the files at any time, with state.db attached): the rows
of notes, their words (FTS5 with BM25), the problems of files that could not be indexed, and feedback.

Every statement on those tables is here; the tables and their migrations are in schema.py; the vectors
in vectors.py, whose `VectorIndex` this `Index` inherits (see there why it is not a separate object).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somna.db import Connection, connect, migrate, transaction
from somna.notes import Note
from somna.schema import INDEX_MIGRATIONS, STATE_MIGRATIONS
from somna.vectors import VectorIndex


@dataclass(frozen=True)
class Row:
    rowid: int
    id: str
    kind: str
    path: str
    title: str
    type: str
    tags: list[str]
    status: str
    source: str
    created: str
    updated: str
    helpful: int
    harmful: int
    version: str
    body: str
    related: list[str]
    trust: str = ""  # provenance (somna.untrusted): human, agent, harvested; "" for rows indexed before it
    successor: str = ""  # the memory that superseded this one or that it was merged into (`superseded_by`)


_ROW_COLS = (
    "rowid, id, kind, path, title, type, tags, status, source, created, updated, helpful, harmful, "
    "version, body, related, trust, successor"
)


_ROW_COLS_LEAN = _ROW_COLS.replace("body, related", "'', '[]'")  # body "" and related [], for ranking
_UPSERT_COLS = (
    "id",
    "kind",
    "path",
    "title",
    "type",
    "tags",
    "status",
    "source",
    "created",
    "updated",
    "helpful",
    "harmful",
    "version",
    "text_hash",
    "mtime_ns",
    "size",
    "body",
    "related",
    "trust",
    "successor",
)


def _row(r: tuple[Any, ...]) -> Row:
    return Row(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        r[5],
        json.loads(r[6]),
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        json.loads(r[15]),
        r[16],
        r[17],
    )


COMMON_MIN_ROWS = 1000  # from this many rows on, words in more than half of them leave the FTS query
LARGE_ROWS = 5000  # from this many rows on, the words query keeps only words in at most RARE_FRACTION of rows
RARE_FRACTION = 0.05


def fts_query(text: str) -> str:
    """Words of the query, quoted and OR-ed: no FTS5 syntax from the caller ever reaches SQLite."""
    words = re.findall(r"\w+", text.lower())[:64]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


class Index(VectorIndex):
    def __init__(self, somna_dir: Path) -> None:
        somna_dir.mkdir(parents=True, exist_ok=True)
        self.path = somna_dir / "index.db"
        conn = connect(self.path)
        migrate(conn, INDEX_MIGRATIONS)
        state = connect(somna_dir / "state.db", vec=False)
        migrate(state, STATE_MIGRATIONS)
        state.close()
        conn.execute("ATTACH DATABASE ? AS state", (str(somna_dir / "state.db"),))
        super().__init__(conn)
        self._df: dict[str, tuple[int, int]] = {}  # word -> (rows containing it, max rowid then)
        self._ranked: tuple[int, dict[int, Row]] | None = None  # (thread, rows it ranked): many_searches

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def many_searches(self) -> Iterator[None]:
        """Many searches in a row, with nothing written meanwhile (the exam): each row that a search ranks is
        read once, not once a search (a candidate of one probe is a candidate of many). Only this thread's
        searches: an agent's search on another thread of the server reads the rows as they are."""
        self._ranked = (threading.get_ident(), {})
        try:
            with super().many_searches():
                yield
        finally:
            self._ranked = None

    # -- rows -------------------------------------------------------------------------------
    def file_stats(self) -> dict[str, tuple[int, int, str]]:
        return {
            p: (m, s, i) for p, m, s, i in self.conn.execute("SELECT path, mtime_ns, size, id FROM notes")
        }

    def upsert(
        self,
        conn: Connection,
        *,
        kind: str,
        path: str,
        note: Note,
        version: str,
        text_hash: str,
        mtime_ns: int,
        size: int,
        vec: list[float] | None,
        model: str | None,
        chunks: list[tuple[str, list[float]]] | None = None,
    ) -> int:
        m = note.meta
        values = (
            note.id,
            kind,
            path,
            note.title,
            str(m.get("type") or "note"),
            json.dumps(note.tags),
            note.status,
            str(m.get("source") or ""),
            str(m.get("created") or ""),
            str(m.get("updated") or m.get("created") or ""),
            int(m.get("helpful") or 0),
            int(m.get("harmful") or 0),
            version,
            text_hash,
            mtime_ns,
            size,
            note.body,
            json.dumps([str(r) for r in m.get("related") or [] if isinstance(r, str | int)]),
            str(m.get("trust") or ""),
            str(m.get("superseded_by") or "") if note.status in ("superseded", "archived") else "",
        )
        old = conn.execute(
            "SELECT rowid, path, id, text_hash, title, tags, body FROM notes WHERE path = ? OR id = ?",
            (path, note.id),
        ).fetchall()
        if (
            vec is None
            and len(old) == 1
            and old[0][1:] == (path, note.id, text_hash, note.title, values[5], note.body)
            and self.has_vector(conn, old[0][0], model)
        ):
            # the same words, title and tags (a link, a status, a counter changed): the row is updated in place,
            # its words and vector stay, and no other process has to reload its vectors
            rowid = int(old[0][0])
            conn.execute(
                f"UPDATE notes SET {', '.join(c + ' = ?' for c in _UPSERT_COLS)} WHERE rowid = ?",
                (*values, rowid),
            )
            conn.execute("DELETE FROM problems WHERE path = ?", (path,))
            return rowid
        for rowid, *_ in old:
            self._delete_rowid(conn, rowid)
        cur = conn.execute(
            f"INSERT INTO notes ({', '.join(_UPSERT_COLS)}) VALUES ({', '.join('?' for _ in _UPSERT_COLS)})",
            values,
        )
        rowid = int(cur.lastrowid)
        conn.execute(
            "INSERT INTO notes_fts (rowid, title, body, tags) VALUES (?, ?, ?, ?)",
            (rowid, note.title, note.body, " ".join(note.tags)),
        )
        self.store_vector(conn, rowid, text_hash, vec, model)
        self.store_chunks(conn, rowid, chunks, model)
        conn.execute("DELETE FROM problems WHERE path = ?", (path,))
        return rowid

    def _delete_rowid(self, conn: Connection, rowid: int) -> None:
        conn.execute("DELETE FROM notes WHERE rowid = ?", (rowid,))
        conn.execute("DELETE FROM notes_fts WHERE rowid = ?", (rowid,))
        self.delete_vector(conn, rowid)

    def delete_path(self, conn: Connection, path: str) -> None:
        for (rowid,) in conn.execute("SELECT rowid FROM notes WHERE path = ?", (path,)).fetchall():
            self._delete_rowid(conn, rowid)
        conn.execute("DELETE FROM problems WHERE path = ?", (path,))

    def set_problem(self, conn: Connection, path: str, message: str) -> None:
        conn.execute("INSERT OR REPLACE INTO problems (path, message) VALUES (?, ?)", (path, message))

    def problems(self) -> list[tuple[str, str]]:
        return list(self.conn.execute("SELECT path, message FROM problems ORDER BY path"))

    def get(self, note_id: str) -> Row | None:
        r = self.conn.execute(f"SELECT {_ROW_COLS} FROM notes WHERE id = ?", (note_id,)).fetchone()
        return _row(r) if r else None

    def get_path(self, path: str) -> Row | None:
        r = self.conn.execute(f"SELECT {_ROW_COLS} FROM notes WHERE path = ?", (path,)).fetchone()
        return _row(r) if r else None

    def rows(self, rowids: Iterable[int], *, body: bool = True) -> dict[int, Row]:
        """Rows by rowid; body=False leaves body "" and related [] (search ranks ~130 candidates a query
        and shows a few: their bodies are fetched with `bodies`)."""
        wanted = list(rowids)
        held = self._ranked  # see many_searches
        ranked = held[1] if held is not None and held[0] == threading.get_ident() and not body else None
        ids = wanted if ranked is None else [i for i in wanted if i not in ranked]
        cols = _ROW_COLS if body else _ROW_COLS_LEAN
        sql = f"SELECT {cols} FROM notes WHERE rowid IN (SELECT value FROM json_each(?))"
        out = {r[0]: _row(r) for r in self.conn.execute(sql, (json.dumps(ids),))} if ids else {}
        if ranked is None:
            return out
        ranked.update(out)
        return {i: ranked[i] for i in wanted if i in ranked}

    def by_ids(self, note_ids: Iterable[str]) -> dict[str, Row]:
        """Rows by note id, without their bodies."""
        ids = sorted(set(note_ids))
        if not ids:
            return {}
        return {
            r[1]: _row(r)
            for r in self.conn.execute(
                f"SELECT {_ROW_COLS_LEAN} FROM notes WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            )
        }

    def bodies(self, rowids: list[int]) -> dict[int, str]:
        if not rowids:
            return {}
        return dict(
            self.conn.execute(
                "SELECT rowid, body FROM notes WHERE rowid IN (SELECT value FROM json_each(?))",
                (json.dumps(rowids),),
            )
        )

    def all_rows(self, kind: str | None = None) -> list[Row]:
        sql = f"SELECT {_ROW_COLS} FROM notes" + (" WHERE kind = ?" if kind else "") + " ORDER BY path"
        return [_row(r) for r in self.conn.execute(sql, (kind,) if kind else ())]

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM notes").fetchone()[0])

    # -- words (FTS5) -----------------------------------------------------------------------------
    def search_words(
        self, query: str, limit: int, pairs: list[str] | None = None
    ) -> list[tuple[int, float, str]]:
        """(rowid, BM25 score, "") best first; snippets come later, for the hits shown (`snippets`).
        A word in more than half of the rows has a BM25 weight of zero (FTS5 clamps its IDF to 1e-6), so it
        is left out: the same ranking, and a question's common words ("the", "how") no longer make SQLite
        score nearly every row. From LARGE_ROWS rows on, only specific words (in at most 5% of rows) are
        queried (_fts_match). `pairs` ("a b") are also queried as phrases: a row with two of the query's
        words side by side scores above one with them apart (a phrase is rarer than its words)."""
        match = self._fts_match(query, pairs)
        if not match:
            return []
        return [
            (r, -score, "")
            for r, score in self.conn.execute(
                "SELECT rowid, bm25(notes_fts, 3.0, 1.0, 2.0) "
                "FROM notes_fts WHERE notes_fts MATCH ? ORDER BY bm25(notes_fts, 3.0, 1.0, 2.0) LIMIT ?",
                (match, limit),
            )
        ]

    def snippets(self, query: str, rowids: list[int]) -> dict[int, str]:
        """FTS5 snippets of the query's words in these rows (the few hits a search returns)."""
        match = fts_query(query)
        if not match or not rowids:
            return {}
        return dict(
            self.conn.execute(
                "SELECT rowid, snippet(notes_fts, 1, '', '', ' … ', 24) FROM notes_fts WHERE notes_fts MATCH ? "
                "AND rowid IN (SELECT value FROM json_each(?))",
                (match, json.dumps(rowids)),
            )
        )

    def _fts_match(self, query: str, pairs: list[str] | None = None) -> str:
        words = list(dict.fromkeys(re.findall(r"\w+", query.lower())[:64]))
        if len(words) < 2:
            return fts_query(query)
        rows = self.conn.execute("SELECT max(rowid) FROM notes").fetchone()[0] or 0
        if rows < COMMON_MIN_ROWS:
            return " OR ".join(f'"{w}"' for w in words + (pairs or []))
        # max(rowid) >= the number of rows, so "df > max(rowid) / 2" never drops a word that still counts
        keep = [w for w in words if self._doc_freq(w, rows) * 2 <= rows]
        if rows >= LARGE_ROWS:
            # A large store: rank by the specific words only (in at most 5% of rows). Scoring every row
            # that shares a middling word ("fails", "when") costs ~40 ms at 100k rows; the specific words
            # find the same top hits for nearly every query (docs/performance.md), and vectors fuse in.
            rare = [w for w in keep if self._doc_freq(w, rows) <= rows * RARE_FRACTION]
            keep = rare or keep
        # a phrase of kept words only: matching a phrase reads the rows of each of its words
        phrases = [p for p in pairs or [] if set(keep).issuperset(p.split())]
        return " OR ".join(f'"{w}"' for w in (keep or words) + phrases)

    def _doc_freq(self, word: str, rows: int) -> int:
        """Rows that contain the word, cached until the store has grown or shrunk by 5%."""
        hit = self._df.get(word)
        if hit is not None and abs(hit[1] - rows) <= rows * 0.05:
            return hit[0]
        n = int(
            self.conn.execute(
                "SELECT count(*) FROM notes_fts WHERE notes_fts MATCH ?", (f'"{word}"',)
            ).fetchone()[0]
        )
        if len(self._df) > 50_000:
            self._df.clear()
        self._df[word] = (n, rows)
        return n

    # -- feedback (state.db) ----------------------------------------------------------------
    def add_feedback(self, note_ids: list[str], signal: str, client: str, at: str) -> None:
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT INTO state.feedback (note_id, signal, client, at) VALUES (?, ?, ?, ?)",
                [(i, signal, client, at) for i in note_ids],
            )

    def add_helpful_query(self, query: str, note_id: str, at: str) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "INSERT OR REPLACE INTO state.helpful_queries (query, note_id, at) VALUES (?, ?, ?)",
                (query, note_id, at),
            )

    def helpful_queries(self, limit: int = 2000) -> list[tuple[str, str]]:
        """(query, note id), the newest first."""
        sql = "SELECT query, note_id FROM state.helpful_queries ORDER BY at DESC LIMIT ?"
        return [(q, n) for q, n in self.conn.execute(sql, (limit,))]

    def mark_folded(self, note_ids: list[str], until: str) -> None:
        """Feedback up to `until` has been folded into front matter counters."""
        with transaction(self.conn):
            self.conn.executemany(
                "UPDATE state.feedback SET folded = 1 WHERE note_id = ? AND at <= ?",
                [(i, until) for i in note_ids],
            )

    def usage(self, note_ids: list[str]) -> dict[str, tuple[int, int, str]]:
        """Unfolded helpful / harmful counts and the last use, per note id."""
        if not note_ids:
            return {}
        q = ",".join("?" * len(note_ids))
        return {
            i: (h or 0, x or 0, last)
            for i, h, x, last in self.conn.execute(
                "SELECT note_id, sum(signal = 'helpful'), sum(signal = 'harmful'), max(at) FROM state.feedback "
                f"WHERE folded = 0 AND note_id IN ({q}) GROUP BY note_id",
                note_ids,
            )
        }
