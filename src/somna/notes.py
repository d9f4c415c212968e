"""Memory and block files: front matter + Markdown body. Pure functions, no database, no git.

A note on disk:

    ---
    id: retry-on-429-3fa2
    title: Back off on 429
    type: lesson
    tags: [http, retries]
    created: '2026-11-21T10:00:00Z'
    ...
    ---
    On 429, back off 2 s, only for idempotent endpoints.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import tempfile
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from somna.errors import BadNote, InvalidInput

# libyaml when PyYAML was built with it: the same YAML, several times faster (bulk import, reindex)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
BLOCK_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
TYPES = ("fact", "preference", "lesson", "procedure", "decision", "episode", "note")
# Keys written in this order; any other key a person adds is kept after them.
KEY_ORDER = (
    "id",
    "title",
    "type",
    "tags",
    "created",
    "updated",
    "source",
    "helpful",
    "harmful",
    "related",
    "supersedes",
    "status",
    "valid_until",
    "limit",
    "description",
)
INACTIVE = ("archived", "superseded")  # statuses of a memory that no longer holds (kept, never deleted)
MAX_BODY = 100_000
MAX_TITLE = 200
MAX_TAGS = 20


@dataclass
class Note:
    """A parsed note: its front matter and its body."""

    meta: dict[str, Any]
    body: str
    errors: list[str] = field(default_factory=list)
    id_from_name: bool = False  # the file gives no id: it was made from the file's name

    @property
    def id(self) -> str:
        return str(self.meta.get("id", ""))

    @property
    def title(self) -> str:
        return str(self.meta.get("title") or "")

    @property
    def tags(self) -> list[str]:
        return [str(t) for t in self.meta.get("tags") or []]

    @property
    def status(self) -> str:
        return str(self.meta.get("status") or "active")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def version_of(raw: bytes | str) -> str:
    """The version of a file is the hash of its bytes: human edits get versions too."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    return hashlib.sha256(data).hexdigest()[:12]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed_text(title: str, body: str) -> str:
    """The text a note is embedded from: the body, with the title in front unless the body starts with it.

    A title is often the body's first line (or its Markdown heading); embedding it twice cost a second
    pass over the same words and tilted the vector toward that line.
    """
    head = title.strip()
    if not head:
        return body
    return body if first_line(body).startswith(head) or body.lstrip().startswith(head) else f"{head}\n{body}"


def first_line(body: str) -> str:
    """The body's first non-blank line without Markdown heading marks: a memory's title when none is given."""
    return next((line.strip("# ").strip() for line in body.splitlines() if line.strip()), "")


def slugify(text: str, max_len: int = 40) -> str:
    norm = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", norm).strip("-")
    return slug[:max_len].rstrip("-") or "memory"


def path_id(rel: str) -> str:
    """The id of a note without one whose file name another note already has: made from its path under
    memory/ (`memory/a/x.md` -> `a-x`), so two people's `a/x.md` and `b/x.md` both count."""
    inner = rel.removeprefix("memory/").removesuffix(".md")
    return slugify(inner.replace("/", "-"), 80)


def new_id(title: str) -> str:
    return f"{slugify(title, 40)}-{secrets.token_hex(2)}"


def check_id(value: str, *, what: str = "id") -> str:
    """Refuse anything that is not a plain id: no paths, no dots, no NUL, no upper case."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise InvalidInput(
            f"{what} {value[:80]!r} is not valid: use lowercase letters, digits, '-' and '_' (max 80), "
            "as returned by search or write"
            if isinstance(value, str)
            else f"{what} must be a string"
        )
    return value


def _plain(value: Any) -> Any:
    """YAML turns unquoted dates into datetime objects; keep them as ISO strings."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def parse(text: str, *, fallback_id: str = "") -> Note:
    """Parse a note. Raises BadNote when the front matter is present but broken."""
    if "\x00" in text:
        raise BadNote("file contains NUL bytes (binary?)")
    meta: dict[str, Any] = {}
    body = text
    if text.startswith("---"):
        m = re.match(r"^---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(?:\r?\n|$)", text, re.S)
        if not m:
            raise BadNote("front matter starts with '---' but has no closing '---' line")
        try:
            loaded = yaml.load(m.group(1) or "", Loader=_Loader) or {}
        except yaml.YAMLError as exc:
            raise BadNote(f"front matter is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise BadNote("front matter must be a YAML mapping (key: value lines)")
        meta = _plain(loaded)
        body = text[m.end() :]
    note = Note(meta=meta, body=body.strip("\n") + "\n" if body.strip() else "")
    _normalize(note, fallback_id)
    return note


def _normalize(note: Note, fallback_id: str) -> None:
    meta = note.meta
    raw_id = meta.get("id")
    if not (isinstance(raw_id, str) and ID_RE.match(raw_id)):
        if raw_id is not None:
            note.errors.append(f"id {str(raw_id)[:80]!r} is not a valid id; using {fallback_id!r}")
        meta["id"] = fallback_id
        note.id_from_name = True
    if not meta.get("title"):
        first = next((ln.strip("# ").strip() for ln in note.body.splitlines() if ln.strip()), "")
        meta["title"] = first[:MAX_TITLE] or meta["id"]
    tags = meta.get("tags")
    if isinstance(tags, str):
        meta["tags"] = [t.strip() for t in tags.split(",") if t.strip()]
    elif tags is not None and not isinstance(tags, list):
        note.errors.append("tags must be a list")
        meta["tags"] = []
    for key in ("helpful", "harmful"):
        if key in meta and not isinstance(meta[key], int):
            note.errors.append(f"{key} must be a whole number")
            meta[key] = 0


def serialize(note: Note) -> str:
    ordered = {k: note.meta[k] for k in KEY_ORDER if k in note.meta and note.meta[k] not in (None, [], "")}
    ordered.update({k: v for k, v in note.meta.items() if k not in ordered and k not in KEY_ORDER})
    head = yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    body = note.body if note.body.endswith("\n") or not note.body else note.body + "\n"
    return f"---\n{head}---\n{body}"


def check_body(text: str, *, max_len: int = MAX_BODY) -> str:
    if not isinstance(text, str):
        raise InvalidInput("content must be a string")
    if "\x00" in text:
        raise InvalidInput("content contains a NUL character")
    if not text.strip():
        raise InvalidInput("content is empty: write what was learned, in a sentence or more")
    if len(text) > max_len:
        raise InvalidInput(
            f"content is {len(text):,} characters; the limit is {max_len:,}. Split it into several memories."
        )
    return text.strip("\n") + "\n"


def check_tags(tags: list[str] | None) -> list[str]:
    out: list[str] = []
    for tag in tags or []:
        t = str(tag).strip().lower()
        if not t:
            continue
        if len(t) > 50 or any(c in t for c in "\n\r\x00,"):
            raise InvalidInput(f"tag {t[:60]!r} is not valid (max 50 characters, no commas or newlines)")
        if t not in out:
            out.append(t)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags")
    return out


def atomic_write_many(files: list[tuple[Path, str]], *, workers: int = 8) -> None:
    """`atomic_write` for many files at once: each file is flushed to disk before it takes its name, as
    there, but the flushes run side by side and each folder is flushed once, at the end.

    A bulk import of 1,000 memories spent most of its time waiting for 2,000 flushes one after the other.
    """
    tmps: list[tuple[str, Path]] = []
    placed = 0
    try:
        for path, text in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".md", dir=path.parent)
            tmps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)

        def flush(tmp: str) -> None:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(flush, [t for t, path in tmps if durable(path)]))
        for tmp, path in tmps:
            os.replace(tmp, path)
            placed += 1
    finally:
        for tmp, _ in tmps[placed:]:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    for folder in {path.parent for path, _ in files}:
        _fsync_dir(folder)


# Folders whose files need not outlive a crash: the gate's staging copies, thrown away after the trial (a
# cycle at 10k memories writes some 10,000 files there, and an fsync of each cost more than the exam).
SCRATCH: set[Path] = set()


def durable(path: Path) -> bool:
    """Whether a write to `path` must reach the disk before it counts (not in a SCRATCH folder)."""
    return not any(path.is_relative_to(folder) for folder in SCRATCH)


def _fsync_dir(folder: Path) -> None:
    if not durable(folder):
        return
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write(path: Path, text: str, *, mode: int | None = None) -> None:
    """Write text to path so that a reader (or a crash) sees either the old or the new file. The file is
    its owner's alone (0600) unless `mode` says otherwise; the mode is set before it takes its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".md", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            if durable(path):
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
