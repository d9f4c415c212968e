"""Keeping the index in line with the files: index one file, sync the whole store, fill in vectors.

The index is derived: everything here can be rebuilt from memory/ and blocks/. Vectors are looked up
by the hash of the text they embed before the model is asked (a cache that survives a rebuild), and
embedded in batches. A long note has a vector for each later window of its text too (chunks.py).
"""

from __future__ import annotations

import stat
import struct
from pathlib import Path
from typing import TypedDict

from somna import chunks, notes
from somna.db import Connection, transaction
from somna.edits import kind_of
from somna.embeddings import Embedder
from somna.errors import BadNote, InvalidInput, NotFound
from somna.index import Index
from somna.layout import Layout
from somna.notes import Note
from somna.vectors import pack


class SyncReport(TypedDict):
    indexed: int
    removed: int
    problems: list[tuple[str, str]]
    committed: str | None


def ready_model(index: Index, embedder: Embedder | None) -> str | None:
    """The name of the embedding model when it is loaded (its vector table made ready), else None."""
    if embedder is None or not embedder.ready:
        return None
    index.ensure_vec_table(embedder.name, embedder.dim, chunks.scheme(window_of(embedder)))
    return embedder.name


def window_of(embedder: Embedder | None) -> int | None:
    """The word pieces the model reads of a text, when it says (MiniLM does; the hash embedder reads all)."""
    return getattr(embedder, "window", None)


class Indexer:
    """Writes index rows for the files of one store."""

    def __init__(self, layout: Layout, index: Index, embedder: Embedder | None) -> None:
        self.layout = layout
        self.index = index
        self.embedder = embedder
        # later windows' vectors of notes just embedded, by the note's text hash, until index_file stores them
        self.windows: dict[str, list[tuple[str, list[float]]]] = {}

    def model(self) -> str | None:
        return ready_model(self.index, self.embedder)

    def vector(self, note: Note) -> list[float] | None:
        """The note's vector from the model, or None when no model is loaded (the backfill fills it in)."""
        if self.embedder is None or not self.embedder.ready:
            return None
        return self.embed_notes([note])[0]

    def embed_notes(self, batch: list[Note]) -> list[list[float]]:
        """Each note's vector; a long note's later windows are embedded too (in one batch), and kept for
        `index_file`. A short note costs what it always did: one text, one vector."""
        assert self.embedder is not None
        texts = [notes.embed_text(n.title, n.body) for n in batch]
        window = window_of(self.embedder)
        later = [chunks.windows(n.title, t, window)[1:] for n, t in zip(batch, texts, strict=True)]
        firsts = self.embedder.embed(texts)
        flat = [w for ws in later for w in ws]
        vecs = iter(self.embedder.embed(flat) if flat else [])
        if window:
            if len(self.windows) > 4096:  # notes embedded but never indexed (a write that failed)
                self.windows.clear()
            for text, ws in zip(texts, later, strict=True):
                self.windows[notes.content_hash(text)] = [(notes.content_hash(w), next(vecs)) for w in ws]
        return firsts

    def index_file(
        self, conn: Connection, rel: str, text: str, note: Note, *, vec: list[float] | None = None
    ) -> None:
        st = self.layout.path(rel).stat()
        kind = kind_of(rel)
        if kind == "block":
            note.meta["id"] = f"block:{Path(rel).stem}"
        text_hash = notes.content_hash(notes.embed_text(note.title, note.body))
        self.index.upsert(
            conn,
            kind=kind,
            path=rel,
            note=note,
            version=notes.version_of(text),
            text_hash=text_hash,
            mtime_ns=st.st_mtime_ns,
            size=st.st_size,
            vec=vec,
            model=self.model(),
            chunks=self.windows.pop(text_hash, None) if vec is not None else None,
        )

    def sync_files(self) -> SyncReport:
        """Index every file that changed since it was indexed; quarantine the ones somna cannot read."""
        report: SyncReport = {"indexed": 0, "removed": 0, "problems": [], "committed": None}
        known = self.index.file_stats()
        seen: set[str] = set()
        ids: dict[str, str] = {i: p for p, (_, _, i) in known.items() if p.startswith("memory/")}
        with transaction(self.index.conn) as conn:
            # a note straight in memory/ keeps its name as its id before one in a sub-folder
            for rel in sorted(self.layout.files(), key=lambda r: (r.count("/"), r)):
                seen.add(rel)
                try:
                    st = self.layout.path(rel).stat()
                except (InvalidInput, OSError) as exc:
                    self._quarantine(conn, rel, str(exc), report)
                    continue
                old = known.get(rel)
                if old and old[0] == st.st_mtime_ns and old[1] == st.st_size:
                    continue
                try:
                    if not stat.S_ISREG(st.st_mode):
                        raise BadNote(f"{rel} is not a regular file")
                    text, note, _ = self.layout.load(rel)
                    if rel.startswith("memory/") and self.taken(ids, note.id, rel) and note.id_from_name:
                        note.meta["id"] = notes.path_id(rel)  # memory/a/x.md and memory/b/x.md both count
                    if rel.startswith("memory/") and (owner := self.taken(ids, note.id, rel)):
                        raise BadNote(f"id {note.id!r} is already used by {owner}")
                except (BadNote, NotFound, OSError) as exc:
                    self._quarantine(conn, rel, str(exc), report)
                    continue
                self.index_file(conn, rel, text, note)
                ids[note.id] = rel
                report["indexed"] += 1
            for rel in set(known) - seen:
                self.index.delete_path(conn, rel)
                report["removed"] += 1
            for rel, _ in self.index.problems():
                if rel not in seen:  # a quarantined file that is gone: nothing left to report
                    self.index.delete_path(conn, rel)
        return report

    def taken(self, ids: dict[str, str], note_id: str, rel: str) -> str | None:
        """The other file that has this id already, if any."""
        owner = ids.get(note_id)
        return owner if owner and owner != rel and (self.layout.root / owner).exists() else None

    def _quarantine(self, conn: Connection, rel: str, problem: str, report: SyncReport) -> None:
        self.index.delete_path(conn, rel)
        self.index.set_problem(conn, rel, problem)
        report["problems"].append((rel, problem))

    def backfill_vectors(self, batch: int = 64) -> int:
        """Embed every indexed note that has no vector yet; cached vectors are reused.

        Runs on its own connection, so a background thread can fill vectors while tools run.
        """
        if self.embedder is None or not self.embedder.ready:
            return 0
        index = Index(self.layout.somna)
        done = 0
        try:
            model = ready_model(index, self.embedder) or ""
            while True:
                todo = index.missing_vectors(model, batch)
                if not todo:
                    return done + self._backfill_windows(index, model, batch)
                cached = index.cached_vectors(model, [h for _, h, _ in todo])
                need = [(r, h, t) for r, h, t in todo if h not in cached]
                fresh = self.embedder.embed([t for _, _, t in need]) if need else []
                items = [(r, h, cached[h]) for r, h, _ in todo if h in cached]
                items += [(r, h, pack(v)) for (r, h, _), v in zip(need, fresh, strict=True)]
                index.put_vectors(model, items)
                done += len(items)
        finally:
            index.close()

    def _backfill_windows(self, index: Index, model: str, batch: int) -> int:
        """Cut each note not cut yet (an index from before chunks, a note indexed while the model loaded)
        and embed the windows of the long ones; cached windows are reused."""
        window = window_of(self.embedder)
        done = 0
        while window and (todo := index.unchunked(batch)):
            cut = [
                (
                    r,
                    h,
                    [
                        (notes.content_hash(w), w)
                        for w in chunks.windows(t, notes.embed_text(t, b), window)[1:]
                    ],
                )
                for r, h, t, b in todo
            ]
            hashes = list({wh for _, _, ws in cut for wh, _ in ws})
            cached = {
                h: list(struct.unpack(f"{len(v) // 4}f", v))
                for h, v in index.cached_vectors(model, hashes).items()
            }
            need = {wh: w for _, _, ws in cut for wh, w in ws if wh not in cached}
            assert self.embedder is not None
            cached.update(zip(need, self.embedder.embed(list(need.values())) if need else [], strict=True))
            index.put_chunks(model, [(r, h, [(wh, cached[wh]) for wh, _ in ws]) for r, h, ws in cut])
            done += sum(1 for _, _, ws in cut if ws)
        return done

    def problems(self) -> set[str]:
        return {rel for rel, _ in self.index.problems()}
