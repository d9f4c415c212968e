"""The derived index: every SQL statement somna runs lives here.

index.db (rebuildable from the files at any time):
    notes        one row per memory or block file, with its parsed fields and version
    notes_fts    FTS5 over title, body, tags (BM25)
    notes_vec    sqlite-vec vec0 table, created once the embedding dimension is known
    vec_bits     the same vectors binary-quantized (1 bit a dimension, sqlite-vec's vec_quantize_binary)
                 beside the float vector (for re-scoring by rowid):
                 a large store pre-selects candidates by Hamming distance over these (held in memory,
                 reloaded when meta.vec_gen changes) and re-scores them exactly, instead of scanning
                 every float; created with notes_vec (an older index.db gets it on open)
    vec_cache    text hash + model -> vector, so unchanged text is never embedded twice
    problems     files that could not be indexed, and why
state.db (operational state that is not content; survives a rebuild):
    feedback     helpful / harmful events from agents
"""

from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somna.db import Connection, connect, migrate, transaction
from somna.notes import Note, content_hash, embed_text


def _m1_notes(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE notes (
            rowid INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            path TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            type TEXT NOT NULL,
            tags TEXT NOT NULL,
            status TEXT NOT NULL,
            source TEXT NOT NULL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            helpful INTEGER NOT NULL DEFAULT 0,
            harmful INTEGER NOT NULL DEFAULT 0,
            version TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            mtime_ns INTEGER NOT NULL,
            size INTEGER NOT NULL,
            body TEXT NOT NULL
        )"""
    )
    conn.execute("CREATE VIRTUAL TABLE notes_fts USING fts5(title, body, tags, tokenize='porter unicode61')")
    conn.execute(
        "CREATE TABLE vec_cache (text_hash TEXT NOT NULL, model TEXT NOT NULL, vec BLOB NOT NULL, "
        "PRIMARY KEY (text_hash, model))"
    )
    conn.execute("CREATE TABLE problems (path TEXT PRIMARY KEY, message TEXT NOT NULL)")
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _m2_related(conn: Connection) -> None:
    conn.execute("ALTER TABLE notes ADD COLUMN related TEXT NOT NULL DEFAULT '[]'")


def _m3_trust(conn: Connection) -> None:
    conn.execute("ALTER TABLE notes ADD COLUMN trust TEXT NOT NULL DEFAULT ''")


def _m4_embed_text(conn: Connection) -> None:
    """Notes are embedded from `embed_text` (the title once): a row whose text changed loses its vector,
    and the background backfill embeds it again."""
    changed = [
        (new, rowid)
        for rowid, old, title, body in conn.execute("SELECT rowid, text_hash, title, body FROM notes")
        if (new := content_hash(embed_text(title, body))) != old
    ]
    conn.executemany("UPDATE notes SET text_hash = ? WHERE rowid = ?", changed)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    for table in ("notes_vec", "vec_bits"):
        if table in tables:
            conn.executemany(f"DELETE FROM {table} WHERE rowid = ?", [(rowid,) for _, rowid in changed])
    if changed:
        bump_vec_gen(conn)


def _m5_successor(conn: Connection) -> None:
    """Each row knows its successor (`superseded_by`), so search can hand a superseded memory's rank to the
    memory that replaced it. Rows already out of use are read from their files again at the next sync."""
    conn.execute("ALTER TABLE notes ADD COLUMN successor TEXT NOT NULL DEFAULT ''")
    conn.execute("UPDATE notes SET mtime_ns = 0 WHERE status IN ('superseded', 'archived')")


def bump_vec_gen(conn: Connection) -> None:
    """Every change of the vectors bumps meta.vec_gen, so each process knows when to reload its bits."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('vec_gen', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


INDEX_MIGRATIONS = [_m1_notes, _m2_related, _m3_trust, _m4_embed_text, _m5_successor]


def _s1_feedback(conn: Connection) -> None:
    conn.execute(
        "CREATE TABLE feedback (n INTEGER PRIMARY KEY, note_id TEXT NOT NULL, signal TEXT NOT NULL, "
        "client TEXT NOT NULL, at TEXT NOT NULL, folded INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("CREATE INDEX feedback_note ON feedback(note_id)")


def _s2_pending_commits(conn: Connection) -> None:
    """Writes whose git commit is deferred (group commit, Store.group_commits): who, what, which files."""
    conn.execute(
        "CREATE TABLE pending_commits (n INTEGER PRIMARY KEY, paths TEXT NOT NULL, "
        "message TEXT NOT NULL, author TEXT NOT NULL)"
    )


def _s3_helpful_queries(conn: Connection) -> None:
    """Queries whose hit an agent then marked helpful: the exam asks them again (sleep/exam.py)."""
    conn.execute(
        "CREATE TABLE helpful_queries (query TEXT NOT NULL, note_id TEXT NOT NULL, at TEXT NOT NULL, "
        "PRIMARY KEY (query, note_id))"
    )


STATE_MIGRATIONS = [_s1_feedback, _s2_pending_commits, _s3_helpful_queries]


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


# Vector search: at or above BINARY_MIN vectors, pre-select by Hamming distance over vec_bits and
# re-score the best max(RESCORE_MIN, RESCORE_FACTOR * k) exactly (cosine of the float vectors); with
# fewer candidates than that it is exact anyway. Below BINARY_MIN, sqlite-vec scans the floats.
BINARY_MIN = 4096
VEC_BITS_SCHEMA = 2  # vec_bits (rowid, bits, vec); a different value in meta rebuilds the table
RESCORE_MIN = 1000
RESCORE_FACTOR = 12
COMMON_MIN_ROWS = 1000  # from this many rows on, words in more than half of them leave the FTS query
LARGE_ROWS = 5000  # from this many rows on, the words query keeps only words in at most RARE_FRACTION of rows
RARE_FRACTION = 0.05


@dataclass
class _Bits:
    gen: str | None
    ids: Any  # numpy int64 array of rowids
    bits: Any  # numpy uint64 array, one row of packed bits per rowid


def pack(vec: list[float]) -> bytes:
    return struct.pack(f"{len(vec)}f", *vec)


def fts_query(text: str) -> str:
    """Words of the query, quoted and OR-ed: no FTS5 syntax from the caller ever reaches SQLite."""
    words = re.findall(r"\w+", text.lower())[:64]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


class Index:
    def __init__(self, somna_dir: Path) -> None:
        somna_dir.mkdir(parents=True, exist_ok=True)
        self.path = somna_dir / "index.db"
        self.conn = connect(self.path)
        migrate(self.conn, INDEX_MIGRATIONS)
        state = connect(somna_dir / "state.db", vec=False)
        migrate(state, STATE_MIGRATIONS)
        state.close()
        self.conn.execute("ATTACH DATABASE ? AS state", (str(somna_dir / "state.db"),))
        self.binary_min = BINARY_MIN
        self._df: dict[str, tuple[int, int]] = {}  # word -> (rows containing it, max rowid then)
        self._bits: _Bits | None = None
        self._bits_lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def ensure_vec_table(self, model: str, dim: int) -> None:
        """Create notes_vec (and vec_bits) for this model; a different model or dimension starts afresh."""
        want = f"{model}:{dim}"
        bits_want = f"{want}|{VEC_BITS_SCHEMA}"
        if self.get_meta("vec_model") == want and self.get_meta("vec_bits") == bits_want:
            return
        with transaction(self.conn):
            if self.get_meta("vec_model") != want:
                self.conn.execute("DROP TABLE IF EXISTS notes_vec")
                self.conn.execute(
                    f"CREATE VIRTUAL TABLE notes_vec USING vec0(embedding float[{int(dim)}] distance_metric=cosine)"
                )
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('vec_model', ?)", (want,))
            if self.get_meta("vec_bits") != bits_want:  # new, or an index.db from before: derive it
                self.conn.execute("DROP TABLE IF EXISTS vec_bits")
                self.conn.execute(
                    "CREATE TABLE vec_bits (rowid INTEGER PRIMARY KEY, bits BLOB NOT NULL, vec BLOB NOT NULL)"
                )
                self.conn.execute(
                    "INSERT INTO vec_bits (rowid, bits, vec) "
                    "SELECT rowid, vec_quantize_binary(vec_f32(embedding)), embedding FROM notes_vec"
                )
                self.conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('vec_bits', ?)", (bits_want,)
                )
                bump_vec_gen(self.conn)

    def _insert_vec(self, conn: Connection, rowid: int, blob: bytes) -> None:
        conn.execute("INSERT INTO notes_vec (rowid, embedding) VALUES (?, ?)", (rowid, blob))
        if self.get_meta("vec_bits"):
            conn.execute(
                "INSERT OR REPLACE INTO vec_bits (rowid, bits, vec) "
                "VALUES (?, vec_quantize_binary(vec_f32(?)), ?)",
                (rowid, blob, blob),
            )
        bump_vec_gen(conn)

    def _delete_vec(self, conn: Connection, rowid: int) -> None:
        conn.execute("DELETE FROM notes_vec WHERE rowid = ?", (rowid,))
        if self.get_meta("vec_bits"):
            conn.execute("DELETE FROM vec_bits WHERE rowid = ?", (rowid,))
        bump_vec_gen(conn)

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
            and self._has_vec(conn, old[0][0], model)
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
        if vec is None and model:
            cached = conn.execute(
                "SELECT vec FROM vec_cache WHERE text_hash = ? AND model = ?", (text_hash, model)
            ).fetchone()
            if cached:
                self._insert_vec(conn, rowid, cached[0])
        elif vec is not None and model:
            blob = pack(vec)
            conn.execute(
                "INSERT OR REPLACE INTO vec_cache (text_hash, model, vec) VALUES (?,?,?)",
                (text_hash, model, blob),
            )
            self._insert_vec(conn, rowid, blob)
        conn.execute("DELETE FROM problems WHERE path = ?", (path,))
        return rowid

    def _has_vec(self, conn: Connection, rowid: int, model: str | None) -> bool:
        """Whether the row has its vector, or needs none (no model)."""
        if not model or not self.get_meta("vec_model"):
            return True
        return conn.execute("SELECT 1 FROM notes_vec WHERE rowid = ?", (rowid,)).fetchone() is not None

    def _delete_rowid(self, conn: Connection, rowid: int) -> None:
        conn.execute("DELETE FROM notes WHERE rowid = ?", (rowid,))
        conn.execute("DELETE FROM notes_fts WHERE rowid = ?", (rowid,))
        if self.get_meta("vec_model"):
            self._delete_vec(conn, rowid)

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
        ids = list(rowids)
        if not ids:
            return {}
        cols = _ROW_COLS if body else _ROW_COLS_LEAN
        return {
            r[0]: _row(r)
            for r in self.conn.execute(
                f"SELECT {cols} FROM notes WHERE rowid IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            )
        }

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

    # -- vectors ----------------------------------------------------------------------------
    def missing_vectors(self, model: str, limit: int = 256) -> list[tuple[int, str, str]]:
        """(rowid, text_hash, text) of notes that have no vector yet."""
        return [
            (r, h, embed_text(t, b))
            for r, h, t, b in self.conn.execute(
                "SELECT rowid, text_hash, title, body FROM notes WHERE rowid NOT IN (SELECT rowid FROM notes_vec) "
                "LIMIT ?",
                (limit,),
            )
        ]

    def cached_vectors(self, model: str, hashes: list[str]) -> dict[str, bytes]:
        if not hashes:
            return {}
        q = ",".join("?" * len(hashes))
        return dict(
            self.conn.execute(
                f"SELECT text_hash, vec FROM vec_cache WHERE model = ? AND text_hash IN ({q})",
                [model, *hashes],
            )
        )

    def put_vectors(self, model: str, items: list[tuple[int, str, bytes]]) -> None:
        with transaction(self.conn):
            for rowid, text_hash, blob in items:
                ok = self.conn.execute("SELECT text_hash FROM notes WHERE rowid = ?", (rowid,)).fetchone()
                self.conn.execute(
                    "INSERT OR REPLACE INTO vec_cache (text_hash, model, vec) VALUES (?,?,?)",
                    (text_hash, model, blob),
                )
                if ok and ok[0] == text_hash:
                    self._delete_vec(self.conn, rowid)
                    self._insert_vec(self.conn, rowid, blob)

    def vectors(self, rowids: Iterable[int]) -> dict[int, list[float]]:
        ids = list(rowids)
        if not ids or not self.get_meta("vec_model"):
            return {}
        out: dict[int, list[float]] = {}
        # vec_bits keeps each float vector under an ordinary primary key: a lookup, where the vec0 table scans
        table, column = ("vec_bits", "vec") if self.get_meta("vec_bits") else ("notes_vec", "embedding")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            q = ",".join("?" * len(chunk))
            for rowid, blob in self.conn.execute(
                f"SELECT rowid, {column} FROM {table} WHERE rowid IN ({q})", chunk
            ):
                out[rowid] = list(struct.unpack(f"{len(blob) // 4}f", blob))
        return out

    def vector_count(self) -> int:
        if not self.get_meta("vec_model"):
            return 0
        return int(self.conn.execute("SELECT count(*) FROM notes_vec").fetchone()[0])

    # -- search -----------------------------------------------------------------------------
    def search_words(self, query: str, limit: int) -> list[tuple[int, float, str]]:
        """(rowid, BM25 score, "") best first; snippets come later, for the hits shown (`snippets`).

        A word found in more than half of the rows has a BM25 weight of zero (FTS5 clamps its IDF to
        1e-6), so it is left out of the query: the ranking is the same and the common words of a question
        ("the", "how", "to") no longer make SQLite score nearly every row of a large store. From
        LARGE_ROWS rows on, only the specific words (in at most 5% of rows) are queried: see _fts_match."""
        match = self._fts_match(query)
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

    def _fts_match(self, query: str) -> str:
        words = list(dict.fromkeys(re.findall(r"\w+", query.lower())[:64]))
        if len(words) < 2:
            return fts_query(query)
        rows = self.conn.execute("SELECT max(rowid) FROM notes").fetchone()[0] or 0
        if rows < COMMON_MIN_ROWS:
            return fts_query(query)
        # max(rowid) >= the number of rows, so "df > max(rowid) / 2" never drops a word that still counts
        keep = [w for w in words if self._doc_freq(w, rows) * 2 <= rows]
        if rows >= LARGE_ROWS:
            # A large store: rank by the specific words only (in at most 5% of rows). Scoring every row
            # that shares a middling word ("fails", "when") costs ~40 ms at 100k rows; the specific words
            # find the same top hits for nearly every query (docs/performance.md), and vectors fuse in.
            rare = [w for w in keep if self._doc_freq(w, rows) <= rows * RARE_FRACTION]
            keep = rare or keep
        return " OR ".join(f'"{w}"' for w in (keep or words))

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

    def search_vectors(self, vec: list[float], k: int) -> list[tuple[int, float]]:
        """(rowid, cosine similarity) of the k nearest vectors, best first."""
        vec_model = self.get_meta("vec_model")
        if not vec_model:
            return []
        if self.get_meta("vec_bits") == f"{vec_model}|{VEC_BITS_SCHEMA}":
            bits = self._load_bits()
            if bits is not None and len(bits.ids) >= self.binary_min:
                return self._search_binary(bits, pack(vec), k)
        return [
            (r, 1.0 - d)
            for r, d in self.conn.execute(
                "SELECT rowid, distance FROM notes_vec WHERE embedding MATCH ? AND k = ? ORDER BY distance",
                (pack(vec), k),
            )
        ]

    def _load_bits(self) -> _Bits | None:
        """The binary vectors in memory, reloaded when another write (any process) changed them.

        numpy is imported here, after the model (which imports it anyway), never on the handshake."""
        gen = self.get_meta("vec_gen")
        with self._bits_lock:
            if self._bits is not None and self._bits.gen == gen:
                return self._bits
            try:
                import numpy as np  # noqa: PLC0415 - see docstring
            except ImportError:
                return None
            rows = self.conn.execute("SELECT rowid, bits FROM vec_bits ORDER BY rowid").fetchall()
            ids = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
            width = len(rows[0][1]) if rows else 8
            padded = -(-width // 8) * 8
            raw = np.frombuffer(b"".join(b.ljust(padded, b"\0") for _, b in rows), dtype=np.uint8)
            self._bits = _Bits(gen, ids, raw.reshape(len(rows), padded).view(np.uint64))
            return self._bits

    def _search_binary(self, bits: _Bits, blob: bytes, k: int) -> list[tuple[int, float]]:
        import numpy as np  # noqa: PLC0415 - already loaded by _load_bits

        q = self.conn.execute("SELECT vec_quantize_binary(vec_f32(?))", (blob,)).fetchone()[0]
        padded = bits.bits.shape[1] * 8
        qv = np.frombuffer(q.ljust(padded, b"\0"), dtype=np.uint8).view(np.uint64)
        x = bits.bits ^ qv
        if hasattr(np, "bitwise_count"):
            dist = np.bitwise_count(x).sum(axis=1, dtype=np.int32)
        else:  # numpy < 2
            dist = np.unpackbits(x.view(np.uint8), axis=1).sum(axis=1, dtype=np.int32)
        n = len(bits.ids)
        m = min(n, max(RESCORE_MIN, RESCORE_FACTOR * k))
        pick = np.argpartition(dist, m - 1)[:m] if m < n else np.arange(n)
        cand = json.dumps(bits.ids[pick].tolist())
        return [
            (r, 1.0 - d)
            for r, d in self.conn.execute(
                "SELECT rowid, vec_distance_cosine(vec, ?) AS d FROM vec_bits "
                "WHERE rowid IN (SELECT value FROM json_each(?)) ORDER BY d, rowid LIMIT ?",
                (blob, cand, k),
            )
        ]

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
