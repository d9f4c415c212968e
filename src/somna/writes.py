"""Writing memory files: a new memory (with its duplicate check), many at once (an import), and the one
path every file change takes: under the store lock, written atomically, committed, indexed; put back as
it was if the commit fails.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from somna import edits, history, notes, redaction, untrusted
from somna.db import transaction
from somna.errors import BadNote, DuplicateFound, InvalidInput, NotFound
from somna.indexer import Indexer
from somna.journal import Journal
from somna.layout import Layout
from somna.notes import INACTIVE, Note
from somna.relations import differ, relation
from somna.results import WriteResult
from somna.search import candidates
from somna.text import DUPLICATE_WORDS, word_overlap

log = logging.getLogger("somna.writes")

DUP_VECTOR = 0.93
# as alike as this, a memory that gives another value for what an existing one says is likely its update
LIKELY_VECTOR = 0.85
LIKELY_WORDS = 0.6
TYPE_RE = re.compile(r"^[a-z][a-z-]{0,29}$")


class Writer:
    """Writes the memory files of one store."""

    def __init__(
        self,
        layout: Layout,
        indexer: Indexer,
        journal: Journal,
        lock: Callable[[], AbstractContextManager[None]],
        commit: Callable[[list[str], str, str], str | None],
        *,
        scope: str,
        secrets: str,
    ) -> None:
        self.layout = layout
        self.root = layout.root
        self.indexer = indexer
        self.journal = journal
        self.locked = lock
        self.commit = commit  # the store's: now, with the batch around it, or with its group
        self.scope = scope
        self.secrets = secrets  # the store's secrets policy (somna.toml)

    def clean(self, text: str) -> tuple[str, list[str]]:
        """The store's secrets policy applied to text about to be written (see redaction.clean)."""
        return redaction.clean(text, self.secrets)

    def write(
        self,
        content: str,
        *,
        title: str | None = None,
        type: str = "note",
        tags: list[str] | None = None,
        author: str,
        force: bool = False,
        related: list[str] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> WriteResult:
        body, found = self.clean(notes.check_body(content))
        title, found_title = self.clean((title or "").strip())
        found += found_title
        title = (title or notes.first_line(body)).splitlines()[0][: notes.MAX_TITLE]
        if not TYPE_RE.match(type):
            raise InvalidInput(f"type {type[:40]!r} is not valid; use one of {', '.join(notes.TYPES)}")
        tag_list = notes.check_tags(tags)
        for i, tag in enumerate(tag_list):  # tags are stored too: a token pasted as a tag is a secret stored
            tag_list[i], found_tag = self.clean(tag)
            found += found_tag
        likely = self.check_duplicate(notes.embed_text(title, body)) if not force else None
        stamp = notes.now_iso()
        fields: dict[str, Any] = {
            "id": "",
            "title": title,
            "type": type,
            "tags": tag_list,
            "created": stamp,
            "updated": stamp,
            "source": author,
        }
        if related:
            fields["related"] = [notes.check_id(r, what="related id") for r in related]
        edits.check_meta(meta, "be set on write")
        fields.update(meta or {})
        fields["trust"] = self.trust_of_write(author, fields.get("supersedes"))
        flagged = untrusted.flags(f"{title}\n{body}")
        if flagged:
            fields["flags"] = flagged
        note = Note(fields, body)
        vec = self.indexer.vector(note)
        with self.locked():
            for _ in range(20):
                note.meta["id"] = notes.new_id(title)
                rel = f"memory/{note.id}.md"
                if not (self.root / rel).exists() and self.indexer.index.get(note.id) is None:
                    break
            text = notes.serialize(note)
            self.commit_file(rel, text, f"write {note.id}: {title}", author, note, vec, new=True)
        out: WriteResult = {
            "id": note.id,
            "scope": self.scope,
            "version": notes.version_of(text),
            "path": rel,
            "title": title,
            "trust": fields["trust"],
        }
        if found:
            out["redacted"] = sorted(set(found))
        if flagged:
            out["flags"] = flagged
            out["warning"] = untrusted.WARNING
        if likely:
            rid, rtitle, why = likely
            out["likely_update_of"] = rid
            out["note"] = (
                f"written; it looks like a new value for {rid} ({rtitle!r}: {why}). If it replaces it, "
                f"sleep-time will supersede {rid}, or edit {rid} with replace now."
            )
        return out

    def trust_of_write(self, author: str, supersedes: Any) -> str:
        """A merge is as trusted as the least trusted of its originals; anything else, as its writer."""
        if author in untrusted.SLEEP_AUTHORS and isinstance(supersedes, list) and supersedes:
            levels = []
            for ref in supersedes:
                row = self.indexer.index.get(str(ref))
                try:
                    levels.append(
                        untrusted.effective(self.layout.load(row.path)[1].meta) if row else "harvested"
                    )
                except (BadNote, NotFound, InvalidInput):
                    levels.append("harvested")
            return untrusted.weakest(*levels)
        return untrusted.trust_of(author)

    def commit_file(
        self,
        rel: str,
        text: str,
        message: str,
        author: str,
        note: Note,
        vec: list[float] | None,
        *,
        new: bool = False,
        old_text: str | None = None,
        extra_paths: tuple[str, ...] = (),
    ) -> str | None:
        """Write, commit and index one file under the lock (removing `extra_paths` in the same commit);
        on failure the file is put back as it was."""
        path = self.layout.path(rel)
        self.journal.settle(rel, *extra_paths)
        notes.atomic_write(path, text)
        try:
            for extra in extra_paths:
                self.layout.path(extra).unlink(missing_ok=True)
            sha = self.commit([rel, *extra_paths], message, author)
        except Exception:
            if new:
                path.unlink(missing_ok=True)
            elif old_text is not None:
                notes.atomic_write(path, old_text)
            raise
        with transaction(self.indexer.index.conn) as conn:
            self.indexer.index_file(conn, rel, text, note, vec=vec)
        return sha

    def check_duplicate(self, text: str) -> tuple[str, str, str] | None:
        """DuplicateFound, naming it, when an active memory says nearly the same as `text`. A memory as alike
        that pins down another value (`relations.differ`: a number, a version, a path, an identifier, or the
        same numbers in another order) is no duplicate: the most alike of those about the same subject is
        returned, (id, title, why), as what `text` likely updates."""
        # a memory as a whole (its first vector), not one window of a long memory, is what a duplicate repeats
        found = candidates(self.indexer.index, self.indexer.embedder, text, 5, chunks=False)
        best: tuple[float, str, str] | None = None  # (similarity, id, title)
        if found.vectors:
            rows = self.indexer.index.rows(r for r, _ in found.vectors)
            scored = [(sim, rows.get(rowid)) for rowid, sim in found.vectors if sim >= LIKELY_VECTOR]
            duplicate = DUP_VECTOR
        else:
            rows = self.indexer.index.rows(r for r, _, _ in found.words)
            scored = [(word_overlap(text, f"{r.title}\n{r.body}"), r) for r in rows.values()]
            scored = [(sim, r) for sim, r in scored if sim >= LIKELY_WORDS]
            duplicate = DUPLICATE_WORDS
        likely: tuple[float, str, str, str] | None = None
        for sim, row in scored:
            if not row or row.kind != "memory" or row.status in INACTIVE:
                continue
            other = f"{row.title}\n{row.body}"
            why = differ(text, other)
            if why:
                if relation(text, other)[0] != "apart" and (likely is None or sim > likely[0]):
                    likely = (sim, row.id, row.title, why)
            elif sim >= duplicate and (best is None or sim > best[0]):
                best = (sim, row.id, row.title)
        if best:
            sim, rid, rtitle = best
            raise DuplicateFound(
                f"a near-duplicate exists: {rid} ({rtitle!r}, similarity {sim:.2f}). Nothing was written. "
                f"Add the new detail to it with propose_edit (append), or write again with force=true "
                "if it is really different.",
                duplicate_id=rid,
                similarity=round(sim, 3),
            )
        return likely[1:] if likely else None

    def write_many(self, items: list[dict[str, Any]], *, author: str, message: str = "import") -> list[str]:
        """Bulk write (import, benchmarks): one commit, batched embeddings, no duplicate check."""
        stamp = notes.now_iso()
        built: list[Note] = []
        for item in items:
            body, _ = self.clean(notes.check_body(str(item.get("content", ""))))
            title = str(item.get("title") or body.splitlines()[0])[: notes.MAX_TITLE]
            meta = {
                "id": "",
                "title": title,
                "type": item.get("type", "note"),
                "tags": notes.check_tags(item.get("tags")),
                "created": stamp,
                "updated": stamp,
                "source": author,
            }
            built.append(Note(meta, body))
        # The model embeds on its own thread (onnxruntime lets go of the GIL) while the files are written,
        # flushed and committed here.
        embedding: Future[list[list[float]]] | None = None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="somna-embed")
        if self.indexer.embedder is not None and self.indexer.embedder.ready:
            embedding = pool.submit(self.indexer.embed_notes, built)
        ids: list[str] = []
        try:
            with self.locked():
                self.journal.flush()  # the commit below takes all of memory/: others' pending writes go first
                files = []
                for note in built:
                    note.meta["id"] = notes.new_id(note.title)
                    while (self.root / f"memory/{note.id}.md").exists() or note.id in ids:
                        note.meta["id"] = notes.new_id(note.title)
                    files.append((f"memory/{note.id}.md", notes.serialize(note)))
                    ids.append(note.id)
                notes.atomic_write_many([(self.layout.path(rel), text) for rel, text in files])
                history.commit(self.root, ["memory"], f"{message}: {len(built)} memories", author)
                vecs: list[list[float] | None] = [None] * len(built)
                if embedding is not None:
                    try:
                        vecs = list(embedding.result())
                    except Exception as exc:  # the files are committed: the backfill embeds them later
                        log.warning("bulk import: embedding failed (%s); vectors are filled in later", exc)
                with transaction(self.indexer.index.conn) as conn:
                    for (rel, text), note, vec in zip(files, built, vecs, strict=True):
                        self.indexer.index_file(conn, rel, text, note, vec=vec)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return ids
