"""The core API: write, edit, read, search, history, revert, feedback, proposals, sync, doctor.

Files are the truth, git is the history, the index is derived. Every change follows one path:
take the store lock, check the base version, write the file atomically, commit it with its author,
update the index. Knows nothing of MCP or the CLI.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import logging
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somna import history, notes, secrets, untrusted
from somna.config import StoreConfig
from somna.db import connect, transaction
from somna.embeddings import Embedder
from somna.errors import BadNote, Conflict, DuplicateFound, InvalidInput, NotFound, StoreBusy, StoreNotFound
from somna.index import Index, Row, pack
from somna.notes import Note
from somna.search import search as search_store

log = logging.getLogger("somna.store")

SUBDIRS = ("memory", "blocks", "skills", "inbox", "proposals")
TRACKED = ("memory", "blocks", "skills", "proposals", "somna.toml")
MAX_FILE = 1_000_000
INACTIVE = ("archived", "superseded")
OPS = ("str_replace", "append", "replace", "archive", "meta")
DUP_VECTOR = 0.93
DUP_WORDS = 0.85
GROUP_COMMIT_WINDOW = 0.2  # seconds a deferred commit waits for the writes around it (group_commits)
GITIGNORE = ".somna/\ninbox/\n.tmp-*\n"
DEFAULT_BLOCKS = {
    "user": "Who the user is and how they like to work: preferences that hold across projects.",
    "project": "What this project is, its conventions, and decisions already settled.",
}
TYPE_RE = re.compile(r"^[a-z][a-z-]{0,29}$")


META_KEYS = (
    "status",
    "supersedes",
    "superseded_by",
    "valid_until",
    "related",
    "helpful",
    "harmful",
    "tags",
    "archived_reason",
    "trust",
)


@dataclass
class Edit:
    """One change to a note: an op and its arguments, as an agent, a person or sleep-time asked for it."""

    op: str
    old: str | None = None
    new: str | None = None
    count: int = 1
    text: str | None = None
    reason: str | None = None
    meta: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InvalidInput(f"op must be one of {', '.join(OPS)}")
        bad = set(self.meta or {}) - set(META_KEYS)
        if bad:
            raise InvalidInput(
                f"front matter keys {sorted(bad)} cannot be set by an edit; allowed: {META_KEYS}"
            )

    def args(self) -> dict[str, Any]:
        """The arguments worth storing in a proposal file."""
        out = {
            "old": self.old,
            "new": self.new,
            "count": self.count if self.op == "str_replace" else None,
            "text": self.text,
            "reason": self.reason,
            "meta": self.meta,
        }
        return {k: v for k, v in out.items() if v is not None}


def private(path: Path) -> bool:
    """Make a directory (or file) the user's alone: 0700 (0600), where the platform has such modes."""
    if sys.platform == "win32":
        return False
    try:
        mode = path.stat().st_mode
        want = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) & 0o077:
            os.chmod(path, stat.S_IMODE(mode) & want)
            return True
    except OSError:
        pass
    return False


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


class Store:
    """One store directory: memory/, blocks/, skills/, inbox/, proposals/, .somna/ and its git repo."""

    def __init__(self, root: Path, *, scope: str = "user", embedder: Embedder | None = None) -> None:
        root = Path(root).expanduser().resolve()
        if not (root / ".git").exists() or not (root / "memory").is_dir():
            raise StoreNotFound(f"no somna store at {root}: create one with `somna init {root}`")
        self.root = root
        self.scope = scope
        self.embedder = embedder
        self.config = StoreConfig.load(root)
        self.index = self._open_index()
        self._tlock = threading.RLock()
        self._synced = threading.Event()
        self._batch: list[str] | None = None
        self.batch_commit: str | None = None  # the sha of the last batch's commit
        self._held = False
        self._group: threading.Event | None = None  # set: group commits on, and a commit is due
        self._group_stop = threading.Event()
        self._group_thread: threading.Thread | None = None

    def _open_index(self) -> Index:
        """The index; one that SQLite cannot open (a torn or overwritten index.db) is derived data: it is
        set aside in .somna/recovered/ and built again from the files."""
        somna_dir = self.root / ".somna"
        try:
            return Index(somna_dir)
        except Exception as exc:  # the driver's DatabaseError: "file is not a database", "malformed"
            log.warning(
                "index.db cannot be opened (%s); setting it aside and rebuilding it from the files", exc
            )
            dest = somna_dir / "recovered" / time.strftime("%Y%m%dT%H%M%S")
            dest.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm"):
                path = somna_dir / f"index.db{suffix}"
                if path.exists():
                    os.replace(path, dest / path.name)
            return Index(somna_dir)

    # -- creation -----------------------------------------------------------------------------
    @classmethod
    def init(cls, root: Path, **kwargs: Any) -> Store:
        root = Path(root).expanduser()
        root.mkdir(parents=True, exist_ok=True)
        private(root)
        for sub in SUBDIRS:
            (root / sub).mkdir(exist_ok=True)
        for sub in ("skills", "proposals"):
            keep = root / sub / ".gitkeep"
            if not keep.exists():
                keep.write_text("", encoding="utf-8")
        if not (root / ".gitignore").exists():
            (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
        for name, desc in DEFAULT_BLOCKS.items():
            path = root / "blocks" / f"{name}.md"
            if not path.exists():
                block = Note({"id": name, "title": name, "description": desc, "limit": 2000}, "")
                notes.atomic_write(path, notes.serialize(block))
        if not history.is_repo(root):
            history.init(root)
        history.commit(root, [".gitignore", *TRACKED[:-1]], "init somna store", "somna")
        store = cls(root, **kwargs)
        store.sync()
        return store

    def close(self) -> None:
        if self._group_thread is not None:
            self._group_stop.set()
            assert self._group is not None
            self._group.set()
            self._group_thread.join(timeout=30)
            self._group_thread = None
        try:
            self.flush_commits()
        except Exception as exc:  # the journal keeps them: the next process to open the store commits them
            log.warning("pending commits stay in the journal: %s", exc)
        self.index.close()

    # -- group commit -------------------------------------------------------------------------
    def group_commits(self, window: float = GROUP_COMMIT_WINDOW) -> None:
        """Commit this process's writes in groups, at most `window` seconds after they land (the server).

        A write is on disk (flushed) and indexed before it returns, as always; its commit is recorded in
        a journal (state.db: pending_commits) and made by a background thread together with the writes
        around it, one commit per author. git was most of a write's time. Whoever next reads history,
        syncs, runs sleep-time or closes the store commits the journal first, in any process; a process
        killed before its commit leaves the journal for the next one.
        """
        if self._group_thread is not None:
            return
        self._group = threading.Event()
        self._group_stop.clear()

        def loop() -> None:
            assert self._group is not None
            while not self._group_stop.is_set():
                self._group.wait()
                if self._group_stop.is_set():
                    return
                self._group_stop.wait(window)  # let the writes around this one join it
                self._group.clear()
                try:
                    self.flush_commits()
                except Exception as exc:
                    log.warning("group commit failed; it stays in the journal and is retried: %s", exc)
                    self._group_stop.wait(1.0)
                    self._group.set()

        self._group_thread = threading.Thread(target=loop, name="somna-group-commit", daemon=True)
        self._group_thread.start()

    def _settle(self, *paths: str) -> None:
        """Commit a file's deferred change before it changes again, so that history keeps every version."""
        if any(p in self.pending_commits() for p in paths):
            self.flush_commits()

    def pending_commits(self) -> list[str]:
        """Files whose commit is deferred and not made yet (see group_commits)."""
        rows = self.index.conn.execute("SELECT paths FROM state.pending_commits").fetchall()
        return sorted({p for (paths,) in rows for p in json.loads(paths)})

    def flush_commits(self) -> int:
        """Make the commits the journal holds, grouped by author; returns how many were made."""
        state = self.root / ".somna" / "state.db"
        if not state.exists():
            return 0
        with self.locked():
            conn = connect(state, vec=False)
            try:
                rows = conn.execute(
                    "SELECT n, paths, message, author FROM pending_commits ORDER BY n"
                ).fetchall()
                if not rows:
                    return 0
                # consecutive writes of one author: (author, every path, [(a write's paths, its message)])
                groups: list[tuple[str, list[str], list[tuple[list[str], str]]]] = []
                for _, paths, message, author in rows:
                    if not groups or groups[-1][0] != author:
                        groups.append((author, [], []))
                    groups[-1][1].extend(json.loads(paths))
                    groups[-1][2].append((json.loads(paths), message))
                # A file changed by two authors inside one window holds the second change only: it is
                # committed with the last author who changed it.
                last = {p: i for i, (_, paths, _) in enumerate(groups) for p in paths}
                made = 0
                # A file written and then deleted by hand before its commit was never in git: nothing to
                # commit for it (and `git add` would refuse the whole group).
                gone = [p for p in last if not (self.root / p).exists()]
                known = set(history.tracked(self.root, gone)) if gone else set()
                for i, (author, paths, writes) in enumerate(groups):
                    mine = sorted({p for p in paths if last[p] == i and (p not in gone or p in known)})
                    if not mine:
                        continue
                    # the message names the writes whose files this commit holds, not one deleted meanwhile
                    messages = [m for ps, m in writes if set(ps) & set(mine)] or [m for _, m in writes]
                    message = (
                        messages[0]
                        if len(messages) == 1
                        else (
                            f"{len(messages)} changes by {author}\n\n" + "\n".join(f"- {m}" for m in messages)
                        )
                    )
                    if history.commit(self.root, mine, message, author):
                        made += 1
                with transaction(conn):
                    conn.execute("DELETE FROM pending_commits WHERE n <= ?", (rows[-1][0],))
                return made
            finally:
                conn.close()

    # -- locking and paths --------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout: float = 60.0) -> Iterator[None]:
        """The store lock: one writer at a time across threads and processes."""
        with self._tlock:
            if self._held:  # re-entrant within the thread that holds it
                yield
                return
            fd = os.open(self.root / ".somna" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise StoreBusy(f"the store {self.root} is locked by another process") from None
                        time.sleep(0.005)
                self._held = True
                yield
            finally:
                self._held = False
                os.close(fd)

    def _commit(self, paths: list[str], message: str, author: str) -> str | None:
        if self._batch is not None:
            self._batch.extend(paths)
            return None
        if self._group is not None:
            with transaction(self.index.conn) as conn:
                conn.execute(
                    "INSERT INTO state.pending_commits (paths, message, author) VALUES (?, ?, ?)",
                    (json.dumps(paths), message, author),
                )
            self._group.set()
            return None
        return history.commit(self.root, paths, message, author)

    @contextmanager
    def batch(self, message: str | Callable[[], str], author: str) -> Iterator[list[str]]:
        """Changes made inside land as one commit at the end, with `message` (or what it returns then); its
        sha is `batch_commit` afterwards (None if nothing changed).

        Each file is still written atomically and indexed at once; only the commit is deferred.
        """
        with self.locked():  # held throughout: no other process may commit these files as its own
            self.flush_commits()
            self._batch = []
            try:
                yield self._batch
            finally:
                paths, self._batch = self._batch, None
                self.batch_commit = None
                if paths:
                    self.batch_commit = history.commit(
                        self.root, sorted(set(paths)), message() if callable(message) else message, author
                    )

    def _abs(self, relpath: str) -> Path:
        """The absolute path of a file in the store; refuses anything that resolves outside it."""
        path = self.root / relpath
        real = os.path.realpath(path)
        if os.path.commonpath([real, str(self.root)]) != str(self.root):
            raise InvalidInput(f"{relpath!r} resolves outside the store")
        return path

    def _target(self, ref: str) -> tuple[str, str]:
        """(kind, relative path) of a memory id or `block:<name>`."""
        if not isinstance(ref, str) or not ref:
            raise InvalidInput("id is empty: pass an id returned by search or write")
        if ref.startswith("block:"):
            name = ref[6:]
            if not notes.BLOCK_RE.match(name):
                raise InvalidInput(f"block name {name[:60]!r} is not valid")
            rel = f"blocks/{name}.md"
            if not self._abs(rel).exists():
                raise NotFound(f"no block {name!r}; blocks: {', '.join(self.block_names()) or 'none'}")
            return "block", rel
        notes.check_id(ref)
        self.ensure_synced()
        row = self.index.get(ref)
        if row is not None and row.kind == "memory":
            return "memory", row.path
        rel = f"memory/{ref}.md"
        if self._abs(rel).is_file():
            return "memory", rel
        raise NotFound(f"no memory with id {ref!r} in the {self.scope} store; search to find ids")

    def _load(self, rel: str) -> tuple[str, Note, str]:
        path = self._abs(rel)
        try:
            st = path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise BadNote(f"{rel} is not a regular file")
            if st.st_size > MAX_FILE:
                raise BadNote(f"{rel} is {st.st_size:,} bytes; somna reads files up to {MAX_FILE:,}")
            raw = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{rel} no longer exists") from None
        except OSError as exc:
            raise BadNote(f"{rel} cannot be read: {exc.strerror or exc}") from None
        if len(raw) > MAX_FILE:
            raise BadNote(f"{rel} is {len(raw):,} bytes; somna reads files up to {MAX_FILE:,}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadNote(f"{rel} is not UTF-8 text") from None
        note = notes.parse(text, fallback_id=Path(rel).stem.lower() if rel.startswith("memory/") else "")
        return text, note, notes.version_of(raw)

    def block_names(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "blocks").glob("*.md") if notes.BLOCK_RE.match(p.stem))

    # -- indexing -----------------------------------------------------------------------------
    def _embed_text(self, note: Note) -> str:
        return notes.embed_text(note.title, note.body)

    def _model(self, index: Index | None = None) -> str | None:
        if self.embedder is None or not self.embedder.ready:
            return None
        (index or self.index).ensure_vec_table(self.embedder.name, self.embedder.dim)
        return self.embedder.name

    def _index_file(
        self, conn: Any, rel: str, text: str, note: Note, *, vec: list[float] | None = None
    ) -> None:
        st = self._abs(rel).stat()
        kind = "block" if rel.startswith("blocks/") else "memory"
        if kind == "block":
            note.meta["id"] = f"block:{Path(rel).stem}"
        self.index.upsert(
            conn,
            kind=kind,
            path=rel,
            note=note,
            version=notes.version_of(text),
            text_hash=notes.content_hash(self._embed_text(note)),
            mtime_ns=st.st_mtime_ns,
            size=st.st_size,
            vec=vec,
            model=self._model(),
        )

    def _vector(self, note: Note) -> list[float] | None:
        if self.embedder is None or not self.embedder.ready:
            return None
        return self.embedder.embed([self._embed_text(note)])[0]

    def _files(self) -> Iterator[str]:
        for sub, pattern in (("memory", "**/*.md"), ("blocks", "*.md")):
            base = self.root / sub
            for path in base.glob(pattern):
                if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                    continue
                yield path.relative_to(self.root).as_posix()

    def sync(self, *, commit_as: str = "human", commit: bool = True) -> dict[str, Any]:
        """Bring the index in line with the files, and commit edits made outside somna."""
        report: dict[str, Any] = {"indexed": 0, "removed": 0, "problems": [], "committed": None}
        with self.locked():
            if commit:  # deferred commits first: their files are not edits made outside somna
                self.flush_commits()
            known = self.index.file_stats()
            seen: set[str] = set()
            ids: dict[str, str] = {i: p for p, (_, _, i) in known.items() if p.startswith("memory/")}
            with transaction(self.index.conn) as conn:
                for rel in sorted(self._files()):
                    seen.add(rel)
                    path = self.root / rel
                    try:
                        self._abs(rel)
                        st = path.stat()
                    except (InvalidInput, OSError) as exc:
                        self.index.delete_path(conn, rel)
                        self.index.set_problem(conn, rel, str(exc))
                        report["problems"].append((rel, str(exc)))
                        continue
                    old = known.get(rel)
                    if old and old[0] == st.st_mtime_ns and old[1] == st.st_size:
                        continue
                    try:
                        if not stat.S_ISREG(st.st_mode):
                            raise BadNote(f"{rel} is not a regular file")
                        text, note, _ = self._load(rel)
                        owner = ids.get(note.id)
                        if (
                            rel.startswith("memory/")
                            and owner
                            and owner != rel
                            and (self.root / owner).exists()
                        ):
                            raise BadNote(f"id {note.id!r} is already used by {owner}")
                    except (BadNote, NotFound, OSError) as exc:
                        self.index.delete_path(conn, rel)
                        self.index.set_problem(conn, rel, str(exc))
                        report["problems"].append((rel, str(exc)))
                        continue
                    self._index_file(conn, rel, text, note)
                    ids[note.id] = rel
                    report["indexed"] += 1
                for rel in set(known) - seen:
                    self.index.delete_path(conn, rel)
                    report["removed"] += 1
                for rel, _ in self.index.problems():
                    if rel not in seen:  # a quarantined file that is gone: nothing left to report
                        self.index.delete_path(conn, rel)
            dirty = history.dirty_paths(self.root, *TRACKED) if commit else []
            # A file somna cannot read stays out of git: quarantined where it is, for a person to fix
            # (git keeps its last good version, so `git diff` shows what broke it).
            quarantined = {rel for rel, _ in self.index.problems()}
            dirty = [p for p in dirty if p not in quarantined]
            if dirty:
                names = ", ".join(sorted(dirty)[:5]) + (" …" if len(dirty) > 5 else "")
                report["committed"] = history.commit(
                    self.root, dirty, f"{commit_as} edit picked up by somna: {names}", commit_as
                )
        self._synced.set()
        self.backfill_vectors()
        return report

    def ensure_synced(self) -> None:
        if not self._synced.is_set():
            self.sync()

    def backfill_vectors(self, batch: int = 64) -> int:
        """Embed every indexed note that has no vector yet; cached vectors are reused.

        Runs on its own connection, so a background thread can fill vectors while tools run.
        """
        if self.embedder is None or not self.embedder.ready:
            return 0
        index = Index(self.root / ".somna")
        done = 0
        try:
            model = self._model(index) or ""
            while True:
                todo = index.missing_vectors(model, batch)
                if not todo:
                    return done
                cached = index.cached_vectors(model, [h for _, h, _ in todo])
                need = [(r, h, t) for r, h, t in todo if h not in cached]
                fresh = self.embedder.embed([t for _, _, t in need]) if need else []
                items = [(r, h, cached[h]) for r, h, _ in todo if h in cached]
                items += [(r, h, pack(v)) for (r, h, _), v in zip(need, fresh, strict=True)]
                index.put_vectors(model, items)
                done += len(items)
        finally:
            index.close()

    # -- reading ------------------------------------------------------------------------------
    def read(self, ref: str) -> dict[str, Any]:
        kind, rel = self._target(ref)
        text, note, version = self._load(rel)
        meta = {k: v for k, v in note.meta.items() if k not in ("id", "title")}
        out = {
            "id": ref,
            "scope": self.scope,
            "kind": kind,
            "title": note.title,
            "version": version,
            "path": rel,
            "source": str(note.meta.get("source") or "human"),
            "trust": untrusted.effective(note.meta),
            "meta": meta,
            "content": note.body,
        }
        flagged = untrusted.flags(f"{note.title}\n{note.body}")
        if flagged:
            out["flags"] = flagged
            out["warning"] = untrusted.WARNING
        return out

    # -- writing ------------------------------------------------------------------------------
    def _clean(self, text: str) -> tuple[str, list[str]]:
        """Apply the store's secrets policy before anything is written: redact (default), refuse or allow."""
        try:
            cleaned, findings = secrets.apply_policy(text, self.config.secrets)
        except secrets.SecretRefused as exc:
            raise InvalidInput(f"{exc}; this store refuses secrets (somna.toml [secrets] policy)") from None
        if findings and self.config.secrets == "redact":
            log.info("redacted %d likely secret(s): %s", len(findings), sorted({f.kind for f in findings}))
            return cleaned, [f.kind for f in findings]
        return text, []

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
    ) -> dict[str, Any]:
        body, found = self._clean(notes.check_body(content))
        title, found_t = self._clean((title or "").strip())
        found += found_t
        title = title or notes.first_line(body)
        title = title.splitlines()[0][: notes.MAX_TITLE]
        if not TYPE_RE.match(type):
            raise InvalidInput(f"type {type[:40]!r} is not valid; use one of {', '.join(notes.TYPES)}")
        tag_list = notes.check_tags(tags)
        for i, tag in enumerate(tag_list):  # tags are stored too: a token pasted as a tag is a secret stored
            tag_list[i], found_tag = self._clean(tag)
            found += found_tag
        if not force:
            self._check_duplicate(notes.embed_text(title, body))  # the text the note is embedded from
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
        bad = set(meta or {}) - set(META_KEYS)
        if bad:
            raise InvalidInput(f"front matter keys {sorted(bad)} cannot be set on write")
        fields.update(meta or {})
        fields["trust"] = self._trust_of_write(author, fields.get("supersedes"))
        flagged = untrusted.flags(f"{title}\n{body}")
        if flagged:
            fields["flags"] = flagged
        note = Note(fields, body)
        vec = self._vector(note)
        with self.locked():
            for _ in range(20):
                note.meta["id"] = notes.new_id(title)
                rel = f"memory/{note.id}.md"
                if not (self.root / rel).exists() and self.index.get(note.id) is None:
                    break
            text = notes.serialize(note)
            self._commit_file(rel, text, f"write {note.id}: {title}", author, note, vec, new=True)
        out = {
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
        return out

    def _trust_of_write(self, author: str, supersedes: Any) -> str:
        """A merge is as trusted as the least trusted of its originals; anything else, as its writer."""
        if author in untrusted.SLEEP_AUTHORS and isinstance(supersedes, list) and supersedes:
            levels = []
            for ref in supersedes:
                row = self.index.get(str(ref))
                try:
                    levels.append(untrusted.effective(self._load(row.path)[1].meta) if row else "harvested")
                except (BadNote, NotFound, InvalidInput):
                    levels.append("harvested")
            return untrusted.weakest(*levels)
        return untrusted.trust_of(author)

    def _commit_file(
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
    ) -> str | None:
        """Write, commit and index one file under the lock; on failure the file is put back as it was."""
        path = self._abs(rel)
        self._settle(rel)
        notes.atomic_write(path, text)
        try:
            sha = self._commit([rel], message, author)
        except Exception:
            if new:
                path.unlink(missing_ok=True)
            elif old_text is not None:
                notes.atomic_write(path, old_text)
            raise
        with transaction(self.index.conn) as conn:
            self._index_file(conn, rel, text, note, vec=vec)
        return sha

    def _check_duplicate(self, text: str) -> None:
        hits = self._candidates(text, 5)
        best: tuple[float, Row] | None = None
        if hits["vectors"]:
            rows = self.index.rows(r for r, _ in hits["vectors"])
            for rowid, sim in hits["vectors"]:
                row = rows.get(rowid)
                if row and row.kind == "memory" and row.status not in INACTIVE and sim >= DUP_VECTOR:
                    best = (sim, row) if best is None or sim > best[0] else best
        else:
            words = _words(text)
            rows = self.index.rows(r for r, _, _ in hits["words"])
            for row in rows.values():
                other = _words(f"{row.title}\n{row.body}")
                sim = len(words & other) / max(1, len(words | other))
                if row.kind == "memory" and row.status not in INACTIVE and sim >= DUP_WORDS:
                    best = (sim, row) if best is None or sim > best[0] else best
        if best:
            sim, row = best
            raise DuplicateFound(
                f"a near-duplicate exists: {row.id} ({row.title!r}, similarity {sim:.2f}). Nothing was written. "
                f"Add the new detail to it with propose_edit (append), or write again with force=true "
                "if it is really different.",
                duplicate_id=row.id,
                similarity=round(sim, 3),
            )

    def write_many(self, items: list[dict[str, Any]], *, author: str, message: str = "import") -> list[str]:
        """Bulk write (import, benchmarks): one commit, batched embeddings, no duplicate check."""
        stamp = notes.now_iso()
        built: list[Note] = []
        for item in items:
            body, _ = self._clean(notes.check_body(str(item.get("content", ""))))
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
        # The model embeds on its own thread (onnxruntime and torch let go of the GIL) while the files
        # are written, flushed and committed here.
        embedding: Future[list[list[float]]] | None = None
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="somna-embed")
        if self.embedder is not None and self.embedder.ready:
            embedding = pool.submit(self.embedder.embed, [self._embed_text(n) for n in built])
        ids: list[str] = []
        try:
            with self.locked():
                self.flush_commits()  # the commit below takes all of memory/: others' pending writes go first
                files = []
                for note in built:
                    note.meta["id"] = notes.new_id(note.title)
                    while (self.root / f"memory/{note.id}.md").exists() or note.id in ids:
                        note.meta["id"] = notes.new_id(note.title)
                    files.append((f"memory/{note.id}.md", notes.serialize(note)))
                    ids.append(note.id)
                notes.atomic_write_many([(self._abs(rel), text) for rel, text in files])
                history.commit(self.root, ["memory"], f"{message}: {len(built)} memories", author)
                vecs: list[list[float] | None] = [None] * len(built)
                if embedding is not None:
                    try:
                        vecs = list(embedding.result())
                    except Exception as exc:  # the files are committed: the backfill embeds them later
                        log.warning(
                            "bulk import: embedding failed (%s); vectors will be filled in later", exc
                        )
                with transaction(self.index.conn) as conn:
                    for (rel, text), note, vec in zip(files, built, vecs, strict=True):
                        self._index_file(conn, rel, text, note, vec=vec)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return ids

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
    ) -> dict[str, Any]:
        """A conditional edit: applied at once or queued as a proposal, as the store's policy says."""
        new, found = self._clean(new) if new else (new, [])
        text, found_t = self._clean(text) if text else (text, [])
        if reason:  # the reason becomes a commit message: git history is forever
            reason, found_r = self._clean(reason)
            found_t = found_t + found_r
        change = Edit(op, old=old, new=new, count=count, text=text, reason=reason, meta=meta)
        kind, rel = self._target(ref)
        current_text, current, version = self._load(rel)
        if base_version != version:
            raise Conflict(
                f"{ref} changed since version {base_version!r}; it is now {version!r}. Re-apply your edit to the "
                "current text (included) with base_version set to the current version.",
                current_version=version,
                current_text=current.body,
            )
        self._apply_op(current, change, kind, author)
        if (policy or self.config.policy_for(rel)) == "propose":
            out = self._propose(ref, rel, change, base_version, author, current_text, current)
        else:
            out = self._apply_edit(ref, rel, change, base_version, author)
        if found or found_t:
            out["redacted"] = sorted(set(found + found_t))
        return out

    def _apply_op(self, note: Note, change: Edit, kind: str, author: str | None = None) -> None:
        op = change.op
        if op == "str_replace":
            if not change.old:
                raise InvalidInput("str_replace needs `old`: the exact text to replace")
            if change.new is None:
                raise InvalidInput("str_replace needs `new`: the replacement text (may be empty)")
            found = note.body.count(change.old)
            if found != change.count:
                raise InvalidInput(
                    f"`old` occurs {found} time(s) in {note.id}, not {change.count}: make it longer to be unique, "
                    "or set count to the number of occurrences to replace them all"
                )
            body = note.body.replace(change.old, change.new)
            note.body = notes.check_body(body) if kind == "memory" else body
        elif op == "append":
            add = notes.check_body(change.text or "")
            note.body = (note.body.rstrip("\n") + "\n" + add) if note.body.strip() else add
        elif op == "replace":
            note.body = notes.check_body(change.text or "") if kind == "memory" else (change.text or "")
        elif op == "archive":
            if kind == "block":
                raise InvalidInput("blocks cannot be archived; edit their text instead")
            note.meta["status"] = "archived"
        for key, value in (change.meta or {}).items():
            if value is None:
                note.meta.pop(key, None)
            else:
                note.meta[key] = value
        if len(note.body) > notes.MAX_BODY:
            raise InvalidInput(
                f"the result would be {len(note.body):,} characters; the limit is {notes.MAX_BODY:,}"
            )
        limit = note.meta.get("limit")
        if kind == "block" and isinstance(limit, int) and len(note.body) > limit:
            raise InvalidInput(
                f"block {Path(note.id).name} would be {len(note.body):,} characters; its limit is {limit:,}. "
                "Keep the block short and move details into a memory (write), then reference it."
            )
        if change.op != "meta":  # bookkeeping (links, counters, supersedes) is not a change of content
            note.meta["updated"] = notes.now_iso()
        if op in ("str_replace", "append", "replace") and author is not None:
            self._provenance(note, author)

    @staticmethod
    def _provenance(note: Note, author: str) -> None:
        """After a change of text: trust is the weakest link of its writers; flags follow the new text."""
        if "trust" in note.meta or author != "human":  # a person's edit of an old, unmarked note adds nothing
            note.meta["trust"] = untrusted.weakest(untrusted.effective(note.meta), untrusted.trust_of(author))
        others = [f for f in note.meta.get("flags") or [] if f != untrusted.INSTRUCTIONS]
        now = others + untrusted.flags(f"{note.title}\n{note.body}")
        if now:
            note.meta["flags"] = now
        else:
            note.meta.pop("flags", None)

    def _apply_edit(
        self,
        ref: str,
        rel: str,
        change: Edit,
        base_version: str,
        author: str,
        extra_paths: list[str] | None = None,
        message: str | None = None,
        writer: str | None = None,
    ) -> dict[str, Any]:
        kind = "block" if rel.startswith("blocks/") else "memory"
        with self.locked():
            current_text, note, version = self._load(rel)
            if version != base_version:
                raise Conflict(
                    f"{ref} changed since version {base_version!r}; it is now {version!r}.",
                    current_version=version,
                    current_text=note.body,
                )
            self._apply_op(
                note, change, kind, writer or author
            )  # writer: who wrote the text (a proposal's author)
            new_text = notes.serialize(note)
            # archive and meta leave the text as it was: its vector comes from the cache, not the model
            vec = None if change.op in ("archive", "meta") else self._vector(note)
            reason = (change.reason or "").strip()
            msg = message or f"{change.op} {ref}" + (f": {reason[:200]}" if reason else "")
            path = self._abs(rel)
            self._settle(rel, *(extra_paths or []))
            notes.atomic_write(path, new_text)
            try:
                for extra in extra_paths or []:
                    self._abs(extra).unlink(missing_ok=True)
                sha = self._commit([rel, *(extra_paths or [])], msg, author)
            except Exception:
                notes.atomic_write(path, current_text)
                raise
            with transaction(self.index.conn) as conn:
                self._index_file(conn, rel, new_text, note, vec=vec)
        return {
            "status": "applied",
            "id": ref,
            "scope": self.scope,
            "version": notes.version_of(new_text),
            "previous_version": base_version,
            "commit": sha,
        }

    # -- proposals ----------------------------------------------------------------------------
    def _propose(
        self,
        ref: str,
        rel: str,
        change: Edit,
        base_version: str,
        author: str,
        current_text: str,
        proposed: Note,
    ) -> dict[str, Any]:
        op = change.op
        pid = notes.new_id(f"{op}-{ref.replace(':', '-')}")
        after = notes.serialize(proposed)
        preview = "".join(
            difflib.unified_diff(
                current_text.splitlines(keepends=True),
                after.splitlines(keepends=True),
                rel,
                f"{rel} (proposed)",
            )
        )
        meta = {
            "id": pid,
            "title": f"{op} {ref}",
            "type": "proposal",
            "target": ref,
            "op": op,
            "base_version": base_version,
            "author": author,
            "created": notes.now_iso(),
            **change.args(),
        }
        prel = f"proposals/{pid}.md"
        body = f"Proposed by {author}. Accept with `somna proposals accept {pid}`.\n\n```diff\n{preview}```\n"
        with self.locked():
            notes.atomic_write(self._abs(prel), notes.serialize(Note(meta, body)))
            history.commit(self.root, [prel], f"propose {op} on {ref}", author)
        return {
            "status": "proposed",
            "proposal": pid,
            "id": ref,
            "scope": self.scope,
            "note": "queued for review by this store's policy; nothing changed yet",
        }

    def proposals(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted((self.root / "proposals").glob("*.md")):
            try:
                _, note, _ = self._load(path.relative_to(self.root).as_posix())
            except (BadNote, NotFound) as exc:
                out.append({"id": path.stem, "error": str(exc)})
                continue
            m = note.meta
            out.append(
                {
                    "id": note.id,
                    "target": m.get("target"),
                    "op": m.get("op"),
                    "author": m.get("author"),
                    "created": m.get("created"),
                    "reason": m.get("reason"),
                    "diff": note.body,
                }
            )
        return out

    def _proposal(self, pid: str) -> tuple[str, dict[str, Any]]:
        notes.check_id(pid, what="proposal id")
        prel = f"proposals/{pid}.md"
        if not self._abs(prel).is_file():
            raise NotFound(f"no proposal {pid!r}; list them with the proposals tool")
        _, note, _ = self._load(prel)
        return prel, note.meta

    def accept(self, pid: str, *, author: str) -> dict[str, Any]:
        prel, m = self._proposal(pid)
        ref = str(m.get("target"))
        _, rel = self._target(ref)
        change = Edit(
            str(m.get("op")),
            old=m.get("old"),
            new=m.get("new"),
            count=int(m.get("count") or 1),
            text=m.get("text"),
            reason=m.get("reason"),
            meta=m.get("meta"),
        )
        return self._apply_edit(
            ref,
            rel,
            change,
            str(m.get("base_version")),
            author,
            extra_paths=[prel],
            message=f"accept proposal {pid}: {m.get('op')} {ref} (proposed by {m.get('author')})",
            writer=str(m.get("author") or "unknown"),
        ) | {"proposal": pid}

    def reject(self, pid: str, *, author: str, reason: str | None = None) -> dict[str, Any]:
        prel, m = self._proposal(pid)
        with self.locked():
            self._abs(prel).unlink()
            history.commit(
                self.root, [prel], f"reject proposal {pid}" + (f": {reason}" if reason else ""), author
            )
        return {"status": "rejected", "proposal": pid}

    # -- history ------------------------------------------------------------------------------
    def history(self, ref: str, *, limit: int = 10, diff: bool = True) -> dict[str, Any]:
        _, rel = self._target(ref)
        self.flush_commits()
        commits = history.log(self.root, rel, limit)
        versions = []
        for c in commits:
            text = history.show(self.root, c.sha, rel)
            versions.append(
                {
                    "commit": c.sha[:12],
                    "version": notes.version_of(text) if text is not None else None,
                    "author": c.author,
                    "date": c.date,
                    "message": c.message,
                }
            )
        out: dict[str, Any] = {"id": ref, "scope": self.scope, "versions": versions}
        if diff and commits:
            latest = commits[0].sha
            out["diff"] = history.diff(self.root, history.parent_of(self.root, latest), latest, rel)
        return out

    def diff(self, ref: str, old: str, new: str = "HEAD") -> str:
        _, rel = self._target(ref)
        self.flush_commits()
        a, b = history.resolve(self.root, old), history.resolve(self.root, new)
        if not a or not b:
            raise InvalidInput(f"unknown commit {old if not a else new!r}; see history for commits")
        return history.diff(self.root, a, b, rel)

    def revert(self, ref: str, *, to: str | None = None, author: str) -> dict[str, Any]:
        """Restore the memory's text as it was at an earlier commit or version, as a new commit."""
        kind, rel = self._target(ref)
        self.flush_commits()
        commits = history.log(self.root, rel, 200)
        if to is None:
            if len(commits) < 2:
                raise InvalidInput(f"{ref} has only one version; nothing to revert to")
            sha = commits[1].sha
        else:
            if not re.fullmatch(r"[0-9a-f]{4,40}", to or ""):
                raise InvalidInput("`to` must be a commit or version from history (hex)")
            sha = next((c.sha for c in commits if c.sha.startswith(to)), None)
            if sha is None:
                sha = next(
                    (
                        c.sha
                        for c in commits
                        if (t := history.show(self.root, c.sha, rel)) and notes.version_of(t) == to
                    ),
                    None,
                )
            if sha is None:
                raise NotFound(f"{to!r} is not a commit or version in the history of {ref}")
        old_text = history.show(self.root, sha, rel)
        if old_text is None:
            raise InvalidInput(f"{ref} did not exist at {sha[:12]}")
        note = notes.parse(old_text, fallback_id=Path(rel).stem)
        with self.locked():
            current_text, _, _ = self._load(rel)
            if current_text == old_text:
                raise InvalidInput(f"{ref} already has the text of {sha[:12]}")
            self._commit_file(
                rel,
                old_text,
                f"revert {ref} to {sha[:12]}",
                author,
                note,
                self._vector(note),
                old_text=current_text,
            )
        return {
            "status": "reverted",
            "id": ref,
            "scope": self.scope,
            "to_commit": sha[:12],
            "version": notes.version_of(old_text),
        }

    # -- feedback -----------------------------------------------------------------------------
    def feedback(self, ids: list[str], signal: str, *, author: str) -> dict[str, Any]:
        if signal not in ("helpful", "harmful"):
            raise InvalidInput("signal must be 'helpful' or 'harmful'")
        for ref in ids:
            self._target(ref)
        self.index.add_feedback(ids, signal, author, notes.now_iso())
        return {"recorded": len(ids), "signal": signal}

    # -- search -------------------------------------------------------------------------------
    def _candidates(self, text: str, n: int, mode: str = "hybrid") -> dict[str, Any]:
        words = self.index.search_words(text, n) if mode in ("hybrid", "words") else []
        vectors: list[tuple[int, float]] = []
        used = "words"
        if mode in ("hybrid", "vectors") and self._model() is not None and self.embedder is not None:
            vec = self.embedder.embed([text])[0]
            if any(vec):  # a zero vector (no words, for the hash embedder) has no direction: no cosine
                vectors = self.index.search_vectors(vec, n)
            used = mode
        return {"words": words, "vectors": vectors, "mode": used}

    def search(self, query: str, **kwargs: Any) -> dict[str, Any]:
        out = search_store(self, query, **kwargs)
        for hit in out["hits"]:  # provenance, so an agent tells what a person wrote from what was harvested
            row = self.index.get(hit["id"])
            if row is None:
                continue
            hit["source"] = row.source or "human"
            hit["trust"] = row.trust or untrusted.effective({"source": row.source})
            flagged = untrusted.flags(f"{row.title}\n{row.body}")
            if flagged:
                hit["flags"] = flagged
        return out
