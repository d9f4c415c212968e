"""The tables of index.db and state.db, each change a migration known by its function's name
(`db.migrate`): rename none of them, add new ones at the end.

index.db (rebuildable from the files at any time):
    notes        one row per memory or block file, with its parsed fields and version (and `chunked`)
    notes_fts    FTS5 over title, body, tags (BM25)
    vec_cache    text hash + model -> vector, so unchanged text is never embedded twice
    problems     files that could not be indexed, and why
    meta         key -> value (the vector model and generation: vectors.py)
    notes_vec, vec_bits   the vectors, created once the model is known (vectors.py), not here
state.db (operational state that is not content; survives a rebuild):
    feedback         helpful / harmful events from agents
    pending_commits  writes whose git commit is deferred (journal.py)
"""

from __future__ import annotations

from somna.db import Connection
from somna.notes import content_hash, embed_text
from somna.vectors import bump_vec_gen


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


def _m6_chunked(conn: Connection) -> None:
    """A long memory has a vector for each later window of its text too (chunks.py, vectors.py); `chunked`
    says a row's windows are stored. Every row starts at 0: the backfill cuts the long ones and embeds
    their windows (the first vector of every row stays as it is)."""
    conn.execute("ALTER TABLE notes ADD COLUMN chunked INTEGER NOT NULL DEFAULT 0")


INDEX_MIGRATIONS = [_m1_notes, _m2_related, _m3_trust, _m4_embed_text, _m5_successor, _m6_chunked]


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
