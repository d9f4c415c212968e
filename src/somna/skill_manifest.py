"""The skills as files under `skill://` URIs (SEP-2640): manifests with digests, and confined reads.

Each valid skill of the catalog is served at `skill://<name>/SKILL.md`, its other files at
`skill://<name>/<path>`, and its folders at `skill://<name>[/<path>]` (directory resources). A skill's
files are every regular file under its folder but hidden ones, `__pycache__` and links that resolve
outside the folder: the same set is listed in its manifest, served by `read`, and shown by `directory`,
so what a host verifies is exactly what it can read.

An entry (`entry`) is the skill's SKILL.md URI, its front matter rendered as JSON (read from the same
bytes as SKILL.md's digest, so the two always agree), and `resources`: every file as `{uri, digest, size}`
with `sha256:<hex>` digests. Digests are cached by (inode, mtime, size), so a listing hashes only files
that changed. A skill is left out of the extension (the tools still serve it) when its front matter has
no `name` (the URI's last segment must equal it) or when it passes the extension's limits: 512 files
or 16 MiB.

Pure: the catalog and the files; no MCP here. Errors are somna's (`InvalidInput`, `NotFound`); the edge
turns both into JSON-RPC -32602, the code the extension names for unknown skills and resources.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import mimetypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from somna.errors import InvalidInput, NotFound
from somna.skill_format import NAME_RE, Skill, check_text
from somna.skills import Catalog

log = logging.getLogger("somna.skills")
SCHEME = "skill://"
MAX_RESOURCES = 512  # the extension's per-skill limits: hosts must accept up to these
MAX_BYTES = 16 * 1024 * 1024
DIRECTORY = "inode/directory"
MAX_URI = 2000


@dataclass(frozen=True)
class File:
    rel: str  # the path in the skill, with /
    path: str  # the real path on disk
    key: tuple[int, int, int]  # inode, mtime_ns, size: what the digest cache is keyed by

    @property
    def size(self) -> int:
        return self.key[2]


def skill_files(folder: Path) -> list[File]:
    """Every file a skill serves, sorted by path: hidden files, __pycache__ and escaping links left out.
    A stat per file; a path is resolved only when it is a link (the watcher runs this for every skill)."""
    real = os.path.realpath(folder)
    out: list[File] = []

    def walk(path: str, rel: str) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name == "__pycache__":
                continue
            sub = f"{rel}{name}"
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([target, real]) != real:
                        continue  # a link out of the skill's folder is never served
                    if os.path.isfile(target):
                        st = os.stat(target)
                        out.append(File(sub, target, (st.st_ino, st.st_mtime_ns, st.st_size)))
                elif entry.is_dir(follow_symlinks=False):
                    walk(entry.path, sub + "/")
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append(File(sub, entry.path, (st.st_ino, st.st_mtime_ns, st.st_size)))
            except (OSError, ValueError):
                continue  # gone meanwhile, or on another drive

    walk(real, "")
    return sorted(out, key=lambda f: f.rel)


def jsonable(value: Any) -> Any:
    """YAML front matter as JSON: dates as ISO text, keys as text, everything else as it is."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def mime_type(rel: str) -> str:
    if rel.lower().endswith((".md", ".markdown")):
        return "text/markdown"
    return mimetypes.guess_type(rel)[0] or "application/octet-stream"


class Manifests:
    """The extension's view of a catalog: entries, URI resolution, reads and directory listings."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._digests: dict[str, tuple[tuple[int, int, int], str]] = {}
        self._front: dict[str, dict[str, Any] | None] = {}  # front matter by SKILL.md digest
        self._lock = threading.Lock()

    # -- entries ----------------------------------------------------------------------------------
    def uris(self) -> list[str]:
        return [f"{SCHEME}{name}/SKILL.md" for name in self.catalog.names()]

    def entries(self, after: str | None = None, limit: int = 50) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` entries after the skill name `after`, sorted by name; and the last name if more."""
        names = [n for n in self.catalog.names() if after is None or n > after]
        out: list[dict[str, Any]] = []
        for i, name in enumerate(names):
            if len(out) == limit:
                return out, names[i - 1]
            try:
                out.append(self.entry(f"{SCHEME}{name}/SKILL.md"))
            except (InvalidInput, NotFound) as exc:  # changed since the catalog's scan, or past the limits
                log.info("skill %s not served through the Skills extension: %s", name, exc)
        return out, None

    def entry(self, uri: str) -> dict[str, Any]:
        """The entry of the skill whose SKILL.md is at `uri`."""
        skill, rel = self.locate(uri)
        if rel != "SKILL.md":
            raise InvalidInput(f"{uri[:200]} is not a skill: a skill's URI ends in /SKILL.md")
        files = skill_files(skill.folder)
        if len(files) > MAX_RESOURCES or sum(f.size for f in files) > MAX_BYTES:
            raise InvalidInput(
                f"skill {skill.name!r} has {len(files)} files, {sum(f.size for f in files):,} bytes: over the "
                f"Skills extension's limits ({MAX_RESOURCES} files, {MAX_BYTES:,} bytes); load_skill serves it"
            )
        resources = []
        front: dict[str, Any] | None = None
        for f in files:
            if f.rel == "SKILL.md":
                raw = Path(f.path).read_bytes()  # digest and front matter from the same bytes
                digest = self._remember(f, raw)
                front = self._front_matter(skill, digest, raw)
                size = len(raw)
            else:
                digest, size = self._digest(f), f.size
            resources.append({"uri": f"{SCHEME}{skill.name}/{f.rel}", "digest": digest, "size": size})
        if front is None:
            raise NotFound(f"{uri[:200]}: the skill's SKILL.md is gone")
        return {"uri": f"{SCHEME}{skill.name}/SKILL.md", "frontmatter": front, "resources": resources}

    def _front_matter(self, skill: Skill, digest: str, raw: bytes) -> dict[str, Any]:
        with self._lock:
            known = digest in self._front
            front = self._front.get(digest)
        if not known:
            try:
                meta, _, _, problems = check_text(raw.decode("utf-8"), skill.name, skill.folder, "SKILL.md")
                bad = any(p.severity == "error" for p in problems)
            except UnicodeDecodeError:
                meta, bad = {}, True
            front = jsonable(meta) if meta and not bad and meta.get("name") == skill.name else None
            with self._lock:
                if len(self._front) > 10_000:
                    self._front.clear()
                self._front[digest] = front
        if front is None:
            raise InvalidInput(
                f"skill {skill.name!r}: its front matter must be valid and have `name: {skill.name}` to be "
                "served through the Skills extension (`somna skills check` says why)"
            )
        return front

    def _remember(self, f: File, raw: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        with self._lock:
            self._digests[f.path] = (f.key, digest)
        return digest

    def _digest(self, f: File) -> str:
        with self._lock:
            cached = self._digests.get(f.path)
        if cached is not None and cached[0] == f.key:
            return cached[1]
        sha = hashlib.sha256()
        with open(f.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
        digest = "sha256:" + sha.hexdigest()
        with self._lock:
            self._digests[f.path] = (f.key, digest)
        return digest

    def signature(self) -> tuple[Any, ...]:
        """Every served file's (path, inode, mtime, size): it changes when any skill file is added, edited
        or removed, which the catalog's own scan (a stat per folder and SKILL.md) does not see."""
        return tuple(
            (name, f.rel, f.key)
            for name in self.catalog.names()
            if (skill := self.catalog.skills.get(name)) is not None
            for f in skill_files(skill.folder)
        )

    # -- URIs -------------------------------------------------------------------------------------
    def locate(self, uri: str) -> tuple[Skill, str]:
        """(the skill, the path in it: '' for its folder) of a `skill://` URI; nothing outside a skill."""
        if not isinstance(uri, str) or not uri.startswith(SCHEME) or len(uri) > MAX_URI:
            raise InvalidInput(f"not a skill URI: {str(uri)[:200]!r} (skill://<name>/SKILL.md)")
        raw = uri[len(SCHEME) :]
        if "?" in raw or "#" in raw:
            raise InvalidInput(f"{uri[:200]}: a skill URI has no query or fragment")
        path = unquote(raw)
        parts = path.split("/")
        if (
            "\x00" in path
            or "\\" in path
            or path.startswith("/")
            or any(p in ("", ".", "..") for p in parts)
            or PurePosixPath(path).is_absolute()
        ):
            raise InvalidInput(f"{uri[:200]}: refused, the path leaves the skill's folder or is not plain")
        name, rel = parts[0], "/".join(parts[1:])
        skill = self.catalog.skills.get(name) if NAME_RE.match(name) else None
        if skill is None:
            raise NotFound(f"no skill {name[:80]!r} on this server: skills/list lists them")
        return skill, rel

    def read(self, uri: str) -> tuple[bytes, str]:
        """The raw bytes of one file of a skill and its MIME type; only files the manifest lists."""
        skill, rel = self.locate(uri)
        if not rel:
            raise InvalidInput(f"{uri[:200]} is a directory: resources/directory/read lists it")
        match = next((f for f in skill_files(skill.folder) if f.rel == rel), None)
        if match is None:
            if any(f.rel.startswith(rel + "/") for f in skill_files(skill.folder)):
                raise InvalidInput(f"{uri[:200]} is a directory: resources/directory/read lists it")
            raise NotFound(f"no file {rel[:200]!r} in skill {skill.name!r}")
        real = os.path.realpath(skill.folder)
        resolved = os.path.realpath(match.path)  # again: the file may have been swapped for a link
        if os.path.commonpath([resolved, real]) != real:
            raise InvalidInput(f"{uri[:200]}: refused, it resolves outside the skill's folder")
        return Path(resolved).read_bytes(), mime_type(rel)

    def directory(self, uri: str) -> list[dict[str, Any]]:
        """The direct children of a skill's folder or sub-folder, as resources (folders: inode/directory)."""
        skill, rel = self.locate(uri)
        prefix = f"{rel}/" if rel else ""
        children: dict[str, dict[str, Any]] = {}
        for f in skill_files(skill.folder):
            if not f.rel.startswith(prefix):
                continue
            child, _, rest = f.rel[len(prefix) :].partition("/")
            base = f"{SCHEME}{skill.name}/{prefix}{child}"
            if rest:
                children.setdefault(child, {"uri": base, "name": child, "mimeType": DIRECTORY})
            elif child == "SKILL.md" and not prefix:  # the skill's own resource: named as the skill
                children[child] = {
                    "uri": base,
                    "name": skill.name,
                    "description": skill.description,
                    "mimeType": "text/markdown",
                    "size": f.size,
                }
            else:
                children[child] = {"uri": base, "name": child, "mimeType": mime_type(child), "size": f.size}
        if not children and rel:
            if any(f.rel == rel for f in skill_files(skill.folder)):
                raise InvalidInput(f"{uri[:200]} is a file, not a directory: resources/read reads it")
            raise NotFound(f"no directory {rel[:200]!r} in skill {skill.name!r}")
        return [children[k] for k in sorted(children)]
