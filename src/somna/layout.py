"""A store on disk: its folders, the files of `.somna/`, creating one, and reading its files safely.

Every other module asks the layout for a path instead of spelling `.somna/...` out by hand, so that the
shape of a store is written down once:

    memory/  blocks/  skills/  inbox/  proposals/  exams/  somna.toml      (the content)
    .somna/  index.db  state.db  lock  daemon.lock  daemon/  logs/  sleep/  recovered/   (derived, local)
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from somna import history, notes
from somna.errors import BadNote, InvalidInput, NotFound, StoreNotFound
from somna.index import Index
from somna.notes import Note

log = logging.getLogger("somna.layout")

SUBDIRS = ("memory", "blocks", "skills", "inbox", "proposals")
TRACKED = ("memory", "blocks", "skills", "proposals", "exams", "somna.toml")  # what git keeps
MAX_FILE = 1_000_000
GITIGNORE = ".somna/\ninbox/\n.tmp-*\n"
DEFAULT_BLOCKS = {
    "user": "Who the user is and how they like to work: preferences that hold across projects.",
    "project": "What this project is, its conventions, and decisions already settled.",
}
INDEX_FILES = ("index.db", "index.db-wal", "index.db-shm")


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


def is_store(root: Path) -> bool:
    return (root / ".git").exists() and (root / "memory").is_dir()


class Layout:
    """The paths of one store, and safe access to its files."""

    def __init__(self, root: Path) -> None:
        root = Path(root).expanduser().resolve()
        if not is_store(root):
            raise StoreNotFound(f"no somna store at {root}: create one with `somna init {root}`")
        self.root = root
        self.somna = root / ".somna"

    # -- the files of .somna/ ---------------------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        return self.somna / "lock"

    @property
    def state_db(self) -> Path:
        return self.somna / "state.db"

    @property
    def sleep_dir(self) -> Path:
        return self.somna / "sleep"

    @property
    def daemon_lock(self) -> Path:
        return self.somna / "daemon.lock"

    @property
    def daemon_log(self) -> Path:
        return self.somna / "logs" / "daemon.log"

    @property
    def daemon_dir(self) -> Path:
        """The daemon's state, its crashes and the servers' leases (background.py)."""
        return self.somna / "daemon"

    def recovered_dir(self) -> Path:
        """A new folder under .somna/recovered/ for what a repair sets aside (never deleted)."""
        return self.somna / "recovered" / time.strftime("%Y%m%dT%H%M%S")

    # -- the index --------------------------------------------------------------------------------
    def open_index(self) -> Index:
        """The index; one that SQLite cannot open (a torn or overwritten index.db) is derived data: it is
        set aside in .somna/recovered/ and built again from the files."""
        try:
            return Index(self.somna)
        except Exception as exc:  # the driver's DatabaseError: "file is not a database", "malformed"
            log.warning(
                "index.db cannot be opened (%s); setting it aside and rebuilding it from the files", exc
            )
            self.set_aside_index()
            return Index(self.somna)

    def set_aside_index(self) -> Path:
        """Move index.db (and its -wal, -shm) to .somna/recovered/; the caller has closed it."""
        dest = self.recovered_dir()
        dest.mkdir(parents=True, exist_ok=True)
        for name in INDEX_FILES:
            path = self.somna / name
            if path.exists():
                os.replace(path, dest / name)
        return dest

    # -- content files ----------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        """The absolute path of a file in the store; refuses anything that resolves outside it."""
        path = self.root / rel
        real = os.path.realpath(path)
        if os.path.commonpath([real, str(self.root)]) != str(self.root):
            raise InvalidInput(f"{rel!r} resolves outside the store")
        return path

    def files(self) -> Iterator[str]:
        """The relative paths of every memory and block file (hidden folders and files left out)."""
        for sub, pattern in (("memory", "**/*.md"), ("blocks", "*.md")):
            for path in (self.root / sub).glob(pattern):
                if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                    continue
                yield path.relative_to(self.root).as_posix()

    def block_names(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "blocks").glob("*.md") if notes.BLOCK_RE.match(p.stem))

    def load(self, rel: str) -> tuple[str, Note, str]:
        """(text, note, version) of a memory, block or proposal file; a file somna cannot read is BadNote."""
        path = self.path(rel)
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


def create(root: Path) -> Path:
    """Lay out a new store (or complete an existing one) and commit it; returns its root."""
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
    for name, description in DEFAULT_BLOCKS.items():
        path = root / "blocks" / f"{name}.md"
        if not path.exists():
            block = Note({"id": name, "title": name, "description": description, "limit": 2000}, "")
            notes.atomic_write(path, notes.serialize(block))
    if not history.is_repo(root):
        history.init(root)
    history.commit(
        root, [p for p in (".gitignore", *TRACKED) if (root / p).exists()], "init somna store", "somna"
    )
    return root
