"""The core API of one store: read, write, edit, search, history, revert, feedback, proposals, sync.

A facade over the parts that do the work (see docs/architecture.md): `layout` (paths, files), `locks`
(one writer at a time), `journal` (group commits), `indexer` (the index follows the files), `edits` (the
operations on a note), `proposals` (the review queue) and `search`. Every change follows one path: take
the store lock, check the base version, write the file atomically, commit it with its author, update
the index. Knows nothing of MCP or the command line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from somna import browse, edits, gitsync, history, layout, notes, untrusted
from somna.browse import Filters
from somna.config import StoreConfig
from somna.edits import Edit, kind_of
from somna.embeddings import Embedder
from somna.errors import Conflict, InvalidInput, NotFound
from somna.history import Commit
from somna.index import Row
from somna.indexer import Indexer, SyncReport
from somna.intents import Intents
from somna.journal import WINDOW, Journal
from somna.layout import Layout
from somna.locks import StoreLock
from somna.proposals import Proposal, ProposalSummary, Queue, diff_body
from somna.results import EditResult, FeedbackResult, HistoryResult, ReadResult, RevertResult, WriteResult
from somna.search import SearchResult
from somna.search import search as run_search
from somna.writes import Writer

log = logging.getLogger("somna.store")


# What accepting a proposal of a kind does: (store, proposal, who accepts, forced) -> a result for the caller;
# `forced`: the person accepts it even though the exam says what it would break (sleep-time's kind).
Acceptor = Callable[["Store", Proposal, str, bool], dict[str, Any]]


class Store:
    """One store directory: memory/, blocks/, skills/, inbox/, proposals/, .somna/ and its git repo."""

    def __init__(self, root: Path, *, scope: str = "user", embedder: Embedder | None = None) -> None:
        self.layout = Layout(root)
        self.root = self.layout.root
        self.scope = scope
        self.config = StoreConfig.load(self.root)
        self.locked = StoreLock(self.layout.lock_file, str(self.root))
        self.index = self.layout.open_index()
        self.indexer = Indexer(self.layout, self.index, embedder)
        self.journal = Journal(self.root, self.layout.state_db, self.index.conn, self.locked)
        self.queue = Queue(self.layout, self.locked, self.commit)
        self.writer = Writer(
            self.layout,
            self.indexer,
            self.journal,
            self.locked,
            self.commit,
            scope=scope,
            secrets=self.config.secrets,
        )
        self.kinds: dict[str, Acceptor] = {"edit": Store._accept_edit}
        self.intents = Intents(self.root, self.layout.somna, layout.TRACKED, self.layout.recovered_dir)
        self._synced = threading.Event()
        self._batch: list[str] | None = None
        self.batch_commit: str | None = None  # the sha of the last batch's commit

    @property
    def embedder(self) -> Embedder | None:
        return self.indexer.embedder

    @embedder.setter
    def embedder(self, embedder: Embedder | None) -> None:
        self.indexer.embedder = embedder  # the one reference the parts read (progress.sync wraps it)

    @classmethod
    def init(cls, root: Path, **kwargs: Any) -> Store:
        store = cls(layout.create(root), **kwargs)
        store.sync()
        return store

    def close(self) -> None:
        self.journal.stop()
        try:
            self.flush_commits()
        except Exception as exc:  # the journal keeps them: the next process to open the store commits them
            log.warning("pending commits stay in the journal: %s", exc)
        self.index.close()

    def rebuild_index(self) -> None:
        """Set the index aside (kept in .somna/recovered/) and start a new one; `sync` fills it."""
        self.index.close()
        self.layout.set_aside_index()
        self.index = self.indexer.index = self.layout.open_index()
        self.journal.conn = self.index.conn
        self._synced.clear()

    # -- commits ------------------------------------------------------------------------------
    def group_commits(self, window: float = WINDOW) -> None:
        """Commit this process's writes in groups, at most `window` seconds after they land (the server):
        see journal.py."""
        self.journal.start(window)

    def pending_commits(self) -> list[str]:
        return self.journal.pending()

    def flush_commits(self) -> int:
        return self.journal.flush()

    def commit(self, paths: list[str], message: str, author: str) -> str | None:
        """Commit files written under the lock: now, with the batch around it, or with its group."""
        if self._batch is not None:
            self._batch.extend(paths)
            return None
        if self.journal.on:
            self.journal.record(paths, message, author)
            return None
        return history.commit(self.root, paths, message, author)

    @contextmanager
    def batch(self, message: str | Callable[[], str], author: str) -> Iterator[list[str]]:
        """Changes made inside land as one commit at the end, with `message` (or what it returns then); its
        sha is `batch_commit` afterwards (None if nothing changed). Files are still written and indexed
        at once; only the commit is deferred."""
        with self.locked():  # held throughout: no other process may commit these files as its own
            self.flush_commits()
            self._batch = []
            try:
                yield self._batch
            finally:
                paths, self._batch = self._batch, None
                self.batch_commit = None
                if paths:
                    text = message() if callable(message) else message
                    self.batch_commit = history.commit(self.root, sorted(set(paths)), text, author)

    @contextmanager
    def all_or_nothing(self, name: str, author: str) -> Iterator[None]:
        """What is done inside, in however many batches, is undone together by the next sync if this process
        dies before the end (see intents.py)."""
        with self.intents.hold(name, author):
            yield

    # -- finding and reading ------------------------------------------------------------------
    def locate(self, ref: str) -> tuple[str, str]:
        """(kind, relative path) of a memory id or `block:<name>`; NotFound if the store has none."""
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("id is empty: pass an id returned by search or write")
        if ref.startswith("block:"):
            name = ref[6:]
            if not notes.BLOCK_RE.match(name):
                raise InvalidInput(f"block name {name[:60]!r} is not valid")
            rel = f"blocks/{name}.md"
            if not self.layout.path(rel).exists():
                raise NotFound(f"no block {name!r}; blocks: {', '.join(self.block_names()) or 'none'}")
            return "block", rel
        notes.check_id(ref)
        self.ensure_synced()
        row = self.index.get(ref)
        if row is not None and row.kind == "memory":
            return "memory", row.path
        rel = f"memory/{ref}.md"
        if self.layout.path(rel).is_file():
            return "memory", rel
        raise NotFound(f"no memory with id {ref!r} in the {self.scope} store; search to find ids")

    def block_names(self) -> list[str]:
        return self.layout.block_names()

    def read(self, ref: str) -> ReadResult:
        kind, rel = self.locate(ref)
        _, note, version = self.layout.load(rel)
        out: ReadResult = {
            "id": ref,
            "scope": self.scope,
            "kind": kind,
            "title": note.title,
            "version": version,
            "path": rel,
            "source": str(note.meta.get("source") or "human"),
            "trust": untrusted.effective(note.meta),
            "meta": {k: v for k, v in note.meta.items() if k not in ("id", "title")},
            "content": note.body,
        }
        flagged = untrusted.flags(f"{note.title}\n{note.body}")
        if flagged:
            out["flags"] = flagged
            out["warning"] = untrusted.WARNING
        return out

    def search(self, query: str, **kwargs: Any) -> SearchResult:
        self.ensure_synced()
        return run_search(self.index, self.embedder, query, scope=self.scope, **kwargs)

    def browse(self, filters: Filters, *, limit: int = 50, offset: int = 0) -> tuple[int, list[Row]]:
        """(how many match, a page of memories without bodies), the most recently updated first."""
        self.ensure_synced()
        return browse.page(self.index, filters, limit=limit, offset=offset)

    def filter_values(self) -> dict[str, list[str]]:
        """The values each filter of a list can take here (types, statuses, sources, trust levels)."""
        return browse.choices(self.index)

    def stats(self) -> dict[str, Any]:
        """What a chart of learning needs now: the active memories and their size, the feedback by day."""
        return {"active": browse.active_size(self.index), "feedback": browse.feedback_by_day(self.index)}

    # -- the index follows the files ----------------------------------------------------------
    def sync(self, *, commit_as: str = "human", commit: bool = True) -> SyncReport:
        """Bring the index in line with the files, and commit edits made outside somna."""
        with self.locked():
            gitsync.recover(self.root, self.layout.somna)  # a sync killed while it moved the files
            if commit:  # deferred commits first: their files are not edits made outside somna
                self.flush_commits()
                self.intents.undo()  # and an operation that died half-way is not a hand edit either
            report = self.indexer.sync_files()
            # A file somna cannot read stays out of git: quarantined where it is, for a person to fix
            # (git keeps its last good version, so `git diff` shows what broke it).
            quarantined = self.indexer.problems()
            dirty = (
                [p for p in history.dirty_paths(self.root, *layout.TRACKED) if p not in quarantined]
                if commit
                else []
            )
            if dirty:
                names = ", ".join(sorted(dirty)[:5]) + (" …" if len(dirty) > 5 else "")
                message = f"{commit_as} edit picked up by somna: {names}"
                report["committed"] = history.commit(self.root, dirty, message, commit_as)
        self._synced.set()
        self.backfill_vectors()
        return report

    def ensure_synced(self) -> None:
        if not self._synced.is_set():
            self.sync()

    def backfill_vectors(self, batch: int = 64) -> int:
        return self.indexer.backfill_vectors(batch)

    # -- writing ------------------------------------------------------------------------------
    # -- writing ------------------------------------------------------------------------------
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
        """A new memory; refused (DuplicateFound) when an active one says nearly the same, unless `force`."""
        return self.writer.write(
            content, title=title, type=type, tags=tags, author=author, force=force, related=related, meta=meta
        )

    def write_many(self, items: list[dict[str, Any]], *, author: str, message: str = "import") -> list[str]:
        """Bulk write (import, benchmarks): one commit, batched embeddings, no duplicate check."""
        return self.writer.write_many(items, author=author, message=message)

    # -- editing ------------------------------------------------------------------------------
    def edit(
        self,
        ref: str,
        op: str,
        base_version: str,
        *,
        author: str,
        old: str | None = None,
        new: str | None = None,
        count: int = 1,
        text: str | None = None,
        reason: str | None = None,
        meta: dict[str, Any] | None = None,
        policy: str | None = None,
    ) -> EditResult:
        """A conditional edit: applied at once or queued as a proposal, as the store's policy says."""
        found: list[str] = []
        if new:
            new, found = self.writer.clean(new)
        if text:
            text, found_text = self.writer.clean(text)
            found += found_text
        if reason:  # the reason becomes a commit message: git history is forever
            reason, found_reason = self.writer.clean(reason)
            found += found_reason
        change = Edit(op, old=old, new=new, count=count, text=text, reason=reason, meta=meta)
        kind, rel = self.locate(ref)
        current_text, current, version = self.layout.load(rel)
        if base_version != version:
            raise Conflict(
                f"{ref} changed since version {base_version!r}; it is now {version!r}. Re-apply your edit to the "
                "current text (included) with base_version set to the current version.",
                current_version=version,
                current_text=current.body,
            )
        edits.apply(current, change, kind, author)
        if (policy or self.config.policy_for(rel)) == "propose":
            proposal = Proposal(
                id="",
                kind="edit",
                target=ref,
                title=f"{change.op} {ref}",
                author=author,
                created=notes.now_iso(),
                fields={"op": change.op, "base_version": base_version, **change.args()},
                body=diff_body(current_text, notes.serialize(current), rel),
            )
            out: EditResult = {
                "status": "proposed",
                "proposal": self.queue.add(proposal, f"propose {change.op} on {ref}"),
                "id": ref,
                "scope": self.scope,
                "note": "queued for review by this store's policy; nothing changed yet",
            }
        else:
            out = self._apply_edit(ref, rel, change, base_version, author)
        if found:
            out["redacted"] = sorted(set(found))
        return out

    def _apply_edit(
        self, ref: str, rel: str, change: Edit, base_version: str, author: str, writer: str | None = None
    ) -> EditResult:
        """Apply an edit under the lock; `writer` wrote its text (a proposal's author), `author` applies it."""
        with self.locked():
            current_text, note, version = self.layout.load(rel)
            if version != base_version:
                raise Conflict(
                    f"{ref} changed since version {base_version!r}; it is now {version!r}.",
                    current_version=version,
                    current_text=note.body,
                )
            if kind_of(rel) == "memory":
                note.meta["id"] = ref  # a note whose id came from its path (a-x) now says so in the file
            edits.apply(note, change, kind_of(rel), writer or author)
            new_text = notes.serialize(note)
            # archive and meta leave the text as it was: its vector comes from the cache, not the model
            vec = None if change.op in ("archive", "meta") else self.indexer.vector(note)
            reason = (change.reason or "").strip()
            message = f"{change.op} {ref}" + (f": {reason[:200]}" if reason else "")
            sha = self.writer.commit_file(rel, new_text, message, author, note, vec, old_text=current_text)
        return {
            "status": "applied",
            "id": ref,
            "scope": self.scope,
            "version": notes.version_of(new_text),
            "previous_version": base_version,
            "commit": sha,
        }

    # -- proposals ----------------------------------------------------------------------------
    def register_kind(self, kind: str, accept: Acceptor) -> None:
        """Say what accepting a proposal of `kind` does (skills and sleep-time register theirs: app.py)."""
        self.kinds[kind] = accept

    def proposals(self) -> list[ProposalSummary]:
        return self.queue.list()

    def accept(self, pid: str, *, author: str, force: bool = False) -> dict[str, Any]:
        """Apply a proposal, whatever its kind, and remove it, in one commit by `author`."""
        proposal = self.queue.get(pid)
        accept = self.kinds.get(proposal.kind)
        if accept is None:
            raise InvalidInput(
                f"somna cannot accept a {proposal.kind!r} proposal here; known: {', '.join(self.kinds)}"
            )
        message = f"accept proposal {pid}: {proposal.title} (proposed by {proposal.author})"
        with self.batch(message, author) as paths:
            out = accept(self, proposal, author, force)
            self.queue.remove(proposal)
            paths.append(proposal.path)
        return out | {"proposal": pid, "commit": self.batch_commit}

    def _accept_edit(self, proposal: Proposal, author: str, force: bool = False) -> dict[str, Any]:
        change = Edit.from_args(str(proposal.fields.get("op")), proposal.fields)
        _, rel = self.locate(proposal.target)
        base = str(proposal.fields.get("base_version"))
        return dict(self._apply_edit(proposal.target, rel, change, base, author, writer=proposal.author))

    def reject(self, pid: str, *, author: str, reason: str | None = None) -> dict[str, Any]:
        proposal = self.queue.get(pid)
        with self.locked():
            self.queue.remove(proposal)
            history.commit(
                self.root,
                [proposal.path],
                f"reject proposal {pid}" + (f": {reason}" if reason else ""),
                author,
            )
        return {"status": "rejected", "proposal": pid}

    # -- history ------------------------------------------------------------------------------
    def history(self, ref: str, *, limit: int = 10, diff: bool = True) -> HistoryResult:
        _, rel = self.locate(ref)
        self.flush_commits()
        out: HistoryResult = {
            "id": ref,
            "scope": self.scope,
            "versions": history.versions(self.root, rel, limit),
        }
        if diff and out["versions"]:
            latest = history.resolve(self.root, out["versions"][0]["commit"]) or "HEAD"
            out["diff"] = history.diff(self.root, history.parent_of(self.root, latest), latest, rel)
        return out

    def timeline(self, *, limit: int = 100) -> list[Commit]:
        """The store's commits, newest first: who changed what, and why."""
        self.flush_commits()
        return history.log(self.root, ".", limit)

    def growth(self, days: int = 60) -> list[tuple[str, int, int]]:
        """(day, memories, bytes of memory/) at the end of each of the last `days` days that changed it."""
        self.flush_commits()
        return browse.sizes_by_day(self.root, "memory", days)

    def show_commit(self, sha: str) -> str:
        self.flush_commits()
        return browse.show_commit(self.root, sha)

    def diff(self, ref: str, old: str, new: str = "HEAD") -> str:
        _, rel = self.locate(ref)
        self.flush_commits()
        a, b = history.resolve(self.root, old), history.resolve(self.root, new)
        if not a or not b:
            raise InvalidInput(f"unknown commit {old if not a else new!r}; see history for commits")
        return history.diff(self.root, a, b, rel)

    def revert(self, ref: str, *, to: str | None = None, author: str) -> RevertResult:
        """Restore the memory's text as it was at an earlier commit or version, as a new commit."""
        _, rel = self.locate(ref)
        self.flush_commits()
        sha = history.find(self.root, rel, to, name=ref)
        old_text = history.show(self.root, sha, rel)
        if old_text is None:
            raise InvalidInput(f"{ref} did not exist at {sha[:12]}")
        note = notes.parse(old_text, fallback_id=Path(rel).stem)
        with self.locked():
            current_text, _, _ = self.layout.load(rel)
            if current_text == old_text:
                raise InvalidInput(f"{ref} already has the text of {sha[:12]}")
            message = f"revert {ref} to {sha[:12]}"
            self.writer.commit_file(
                rel, old_text, message, author, note, self.indexer.vector(note), old_text=current_text
            )
        return {
            "status": "reverted",
            "id": ref,
            "scope": self.scope,
            "to_commit": sha[:12],
            "version": notes.version_of(old_text),
        }

    # -- feedback -----------------------------------------------------------------------------
    def feedback(
        self, ids: list[str], signal: str, *, author: str, queries: dict[str, str] | None = None
    ) -> FeedbackResult:
        """Record that memories helped or misled; `queries`: the search that found each, which the exam then
        asks again (a helpful hit only)."""
        if signal not in ("helpful", "harmful"):
            raise InvalidInput("signal must be 'helpful' or 'harmful'")
        for ref in ids:
            self.locate(ref)
        now = notes.now_iso()
        self.index.add_feedback(ids, signal, author, now)
        for ref, query in (queries or {}).items() if signal == "helpful" else ():
            self.index.add_helpful_query(query, ref, now)
        return {"recorded": len(ids), "signal": signal}
