"""The vector half of the index: the statements on notes_vec, vec_bits and vec_cache (the migrations
aside, in schema.py).

    notes_vec    sqlite-vec vec0 table, created once the embedding dimension is known
    vec_bits     the same vectors binary-quantized (1 bit a dimension, sqlite-vec's vec_quantize_binary)
                 beside the float vector (for re-scoring by rowid):
                 a large store pre-selects candidates by Hamming distance over these (held in memory,
                 reloaded when meta.vec_gen changes) and re-scores them exactly, instead of scanning
                 every float; created with notes_vec (an older index.db gets it on open)
    vec_cache    text hash + model -> vector, so unchanged text is never embedded twice (schema.py
                 creates it, as it creates meta)
    meta         vec_model (model:dimension), vec_bits (its schema), vec_gen (bumped by every change),
                 vec_chunks (how long memories were cut: chunks.scheme)

A long memory has more than one vector (chunks.py): its first under its own rowid, as every memory, and
its later windows' under CHUNK_BASE + 64 * rowid + k (k = 1 … 63), one range per memory, beyond any
memory's rowid. `vectors` and everything that compares memories read the first; `search_vectors` scores a
memory by its best vector and answers one (rowid, cosine) per memory. `notes.chunked` says whether a row's
later windows are stored (or it has none): the backfill cuts and embeds the others.

`Index` (index.py) inherits from `VectorIndex` rather than holding one: the callers (store, search,
indexer, sleep, doctor, the tests and benchmarks) ask the index itself for `search_vectors`, `vectors`,
`put_vectors` and the rest, and a row's upsert writes its vector in the same transaction on the same
connection. Composing would add a one-line forward for each of those methods and nothing else.
`VectorIndex` stands on its own all the same: it needs only the connection, and the rows side reaches
it through its public methods (`has_vector`, `store_vector`, `delete_vector`).
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from somna.db import Connection, transaction
from somna.notes import embed_text

# Vector search: at or above BINARY_MIN vectors, pre-select by Hamming distance over vec_bits and
# re-score the best max(RESCORE_MIN, RESCORE_FACTOR * k) exactly (cosine of the float vectors); with
# fewer candidates than that it is exact anyway. Below BINARY_MIN, sqlite-vec scans the floats.
BINARY_MIN = 4096
VEC_BITS_SCHEMA = 2  # vec_bits (rowid, bits, vec); a different value in meta rebuilds the table
RESCORE_MIN = 1000
RESCORE_FACTOR = 12
CHUNK_BASE = 1 << 40  # rowids of the vectors of later windows start here (memory rowids stay below)
CHUNK_SLOTS = 64  # chunks.MAX_VECTORS: a memory's range of vector rowids
MAX_K = 4096  # sqlite-vec answers at most this many nearest vectors a query
SHORTLIST_MARGIN = 1e-3  # see VectorIndex.many_searches


def chunk_rowid(rowid: int, k: int) -> int:
    """The rowid of a memory's k-th vector (k >= 1; the first is the memory's own rowid)."""
    return CHUNK_BASE + rowid * CHUNK_SLOTS + k


def memory_rowid(vec_rowid: int) -> int:
    return vec_rowid if vec_rowid < CHUNK_BASE else (vec_rowid - CHUNK_BASE) // CHUNK_SLOTS


@dataclass
class _Bits:
    gen: str | None
    ids: Any  # numpy int64 array of rowids
    bits: Any  # numpy uint64 array, one row of packed bits per rowid


def pack(vec: list[float]) -> bytes:
    return struct.pack(f"{len(vec)}f", *vec)


def bump_vec_gen(conn: Connection) -> None:
    """Every change of the vectors bumps meta.vec_gen, so each process knows when to reload its bits."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('vec_gen', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
    )


class VectorIndex:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.binary_min = BINARY_MIN
        self._bits: _Bits | None = None
        self._bits_lock = threading.Lock()
        self._floats: tuple[Any, ...] | None = None  # (vec_gen, rowids, vectors, norms): many_searches

    def get_meta(self, key: str) -> str | None:
        """A value of the meta table (every key there is the vectors': model, bits schema, generation)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def ensure_vec_table(self, model: str, dim: int, chunking: str = "") -> None:
        """Create notes_vec (and vec_bits) for this model; a different model or dimension starts afresh, and
        another way of cutting long memories (`chunking`, chunks.scheme) cuts them again."""
        want = f"{model}:{dim}"
        bits_want = f"{want}|{VEC_BITS_SCHEMA}"
        if (
            self.get_meta("vec_model") == want
            and self.get_meta("vec_bits") == bits_want
            and (self.get_meta("vec_chunks") or "") == chunking
        ):
            return
        with transaction(self.conn):
            if self.get_meta("vec_model") == want and (self.get_meta("vec_chunks") or "") != chunking:
                self._drop_chunks(self.conn)
            self.conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('vec_chunks', ?)", (chunking,)
            )
            if self.get_meta("vec_model") != want:
                self.conn.execute("UPDATE notes SET chunked = 0")
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

    # -- one row's vector, inside the rows side's transaction --------------------------------
    def has_vector(self, conn: Connection, rowid: int, model: str | None) -> bool:
        """Whether the row has its vector, or needs none (no model)."""
        if not model or not self.get_meta("vec_model"):
            return True
        return conn.execute("SELECT 1 FROM notes_vec WHERE rowid = ?", (rowid,)).fetchone() is not None

    def store_vector(
        self, conn: Connection, rowid: int, text_hash: str, vec: list[float] | None, model: str | None
    ) -> None:
        """A new row's vector: the one given (kept in vec_cache too), or the cached one for its text."""
        if not model:
            return
        if vec is None:
            cached = conn.execute(
                "SELECT vec FROM vec_cache WHERE text_hash = ? AND model = ?", (text_hash, model)
            ).fetchone()
            if cached:
                self._insert_vec(conn, rowid, cached[0])
            return
        blob = pack(vec)
        conn.execute(
            "INSERT OR REPLACE INTO vec_cache (text_hash, model, vec) VALUES (?,?,?)",
            (text_hash, model, blob),
        )
        self._insert_vec(conn, rowid, blob)

    def delete_vector(self, conn: Connection, rowid: int) -> None:
        """A deleted row's vectors go with it (when the index has vectors at all)."""
        if self.get_meta("vec_model"):
            self._delete_vec(conn, rowid)
            self._delete_chunks(conn, rowid)

    def store_chunks(
        self, conn: Connection, rowid: int, chunks: list[tuple[str, list[float]]] | None, model: str | None
    ) -> None:
        """A row's later windows' vectors, (text hash, vector) each, kept in vec_cache too. None: not cut
        yet (the backfill does it); [] a text within the model's reach, done."""
        if not model or chunks is None:
            return
        self._delete_chunks(conn, rowid)
        for k, (text_hash, vec) in enumerate(chunks[: CHUNK_SLOTS - 1], 1):
            blob = pack(vec)
            conn.execute(
                "INSERT OR REPLACE INTO vec_cache (text_hash, model, vec) VALUES (?,?,?)",
                (text_hash, model, blob),
            )
            self._insert_vec(conn, chunk_rowid(rowid, k), blob)
        conn.execute("UPDATE notes SET chunked = 1 WHERE rowid = ?", (rowid,))

    def unchunked(self, limit: int) -> list[tuple[int, str, str, str]]:
        """(rowid, text_hash, title, body) of rows whose long text may have windows not embedded yet."""
        return list(
            self.conn.execute(
                "SELECT rowid, text_hash, title, body FROM notes WHERE chunked = 0 LIMIT ?", (limit,)
            )
        )

    def put_chunks(self, model: str, items: list[tuple[int, str, list[tuple[str, list[float]]]]]) -> None:
        """(rowid, text_hash, windows' vectors) from the backfill, for rows whose text is still that."""
        with transaction(self.conn):
            for rowid, text_hash, chunks in items:
                ok = self.conn.execute("SELECT text_hash FROM notes WHERE rowid = ?", (rowid,)).fetchone()
                if ok and ok[0] == text_hash:
                    self.store_chunks(self.conn, rowid, chunks, model)

    def _chunk_ids(self, conn: Connection, lo: int, hi: int) -> list[int]:
        if not self.get_meta("vec_bits"):  # an index.db from before vec_bits has no chunks either
            return []
        return [
            r for (r,) in conn.execute("SELECT rowid FROM vec_bits WHERE rowid BETWEEN ? AND ?", (lo, hi))
        ]

    def _delete_chunks(self, conn: Connection, rowid: int) -> None:
        for r in self._chunk_ids(conn, chunk_rowid(rowid, 1), chunk_rowid(rowid, CHUNK_SLOTS - 1)):
            self._delete_vec(conn, r)

    def _drop_chunks(self, conn: Connection) -> None:
        for r in self._chunk_ids(conn, CHUNK_BASE, 1 << 62):
            self._delete_vec(conn, r)
        conn.execute("UPDATE notes SET chunked = 0")

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

    # -- the vectors of many rows, and the cache -------------------------------------------
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
        if self.get_meta("vec_bits"):  # the memories that have a vector, not their windows'
            sql = f"SELECT count(*) FROM vec_bits WHERE rowid < {CHUNK_BASE}"
            return int(self.conn.execute(sql).fetchone()[0])
        return int(self.conn.execute("SELECT count(*) FROM notes_vec").fetchone()[0])

    # -- search ---------------------------------------------------------------------------
    def search_vectors(self, vec: list[float], k: int, *, chunks: bool = True) -> list[tuple[int, float]]:
        """(rowid, cosine similarity) of the k nearest memories, best first: a memory's best vector
        (`chunks`), or its first only (what the duplicate check compares)."""
        if not (
            self.get_meta("vec_bits")
            and self.conn.execute(f"SELECT 1 FROM vec_bits WHERE rowid >= {CHUNK_BASE} LIMIT 1").fetchone()
        ):
            return self._nearest(vec, k)
        fetch = min(MAX_K, 3 * k)
        while True:  # more vectors than memories: ask for more until k memories are in (or all are)
            raw = self._nearest(vec, fetch, k)
            out: dict[int, float] = {}
            for r, sim in raw:
                if chunks or r < CHUNK_BASE:
                    out.setdefault(memory_rowid(r), sim)
            if len(out) >= k or len(raw) < fetch or fetch >= MAX_K:
                return list(out.items())[:k]
            fetch = min(MAX_K, 4 * fetch)

    def _nearest(self, vec: list[float], k: int, memories: int | None = None) -> list[tuple[int, float]]:
        """(vector rowid, cosine) of the k nearest vectors, best first; the binary pre-selection re-scores
        as many as `memories` hits need (the k vectors are asked for only to gather that many memories)."""
        vec_model = self.get_meta("vec_model")
        if not vec_model:
            return []
        if self.get_meta("vec_bits") == f"{vec_model}|{VEC_BITS_SCHEMA}":
            bits = self._load_bits()
            if bits is not None and len(bits.ids) >= self.binary_min:
                return self._search_binary(bits, pack(vec), k, memories or k)
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

    @contextmanager
    def many_searches(self) -> Iterator[None]:
        """Many vector searches in a row (the exam asks thousands): the float vectors are held in memory
        meanwhile (1.5 kB a vector), to re-score fewer candidates in SQLite; the answers do not change."""
        bits = self._load_bits()
        if bits is not None and len(bits.ids) >= self.binary_min:
            import numpy as np  # noqa: PLC0415 - loaded by _load_bits

            rows = self.conn.execute("SELECT rowid, vec FROM vec_bits ORDER BY rowid").fetchall()
            ids = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(v for _, v in rows), dtype=np.float32).reshape(len(rows), -1)
            if np.array_equal(ids, bits.ids):  # else written to meanwhile: every search re-scores in SQLite
                norms = np.linalg.norm(vecs, axis=1)
                self._floats = (bits.gen, ids, vecs, np.where(norms > 0, norms, 1.0))
        try:
            yield
        finally:
            self._floats = None

    def _search_binary(self, bits: _Bits, blob: bytes, k: int, memories: int) -> list[tuple[int, float]]:
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
        m = min(n, max(RESCORE_MIN, RESCORE_FACTOR * memories, k))
        pick = np.argpartition(dist, m - 1)[:m] if m < n else np.arange(n)
        floats = self._floats
        if floats is not None and floats[0] == bits.gen and len(pick) > k:
            # cosines in numpy first, to re-score in SQLite only the candidates that may be among the k best:
            # the same answer (SQLite's float32 cosine is within 1e-4 of numpy's), a twentieth of the rows
            qf = np.frombuffer(blob, dtype=np.float32)
            at = np.searchsorted(floats[1], bits.ids[pick])
            sims = (floats[2][at] @ qf) / (floats[3][at] * (np.linalg.norm(qf) or 1.0))
            pick = pick[sims >= np.partition(sims, len(sims) - k)[len(sims) - k] - SHORTLIST_MARGIN]
        cand = json.dumps(bits.ids[pick].tolist())
        return [
            (r, 1.0 - d)
            for r, d in self.conn.execute(
                "SELECT rowid, vec_distance_cosine(vec, ?) AS d FROM vec_bits "
                "WHERE rowid IN (SELECT value FROM json_each(?)) ORDER BY d, rowid LIMIT ?",
                (blob, cand, k),
            )
        ]
