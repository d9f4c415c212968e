"""The skills catalog: every skill of the stores and mounted folders, kept current, disclosed by levels.

The roots are each store's `skills/` (writable: project first, then user) and the folders in
`SOMNA_SKILL_DIRS` (os.pathsep-separated, e.g. a project's `.claude/skills` and `~/.claude/skills`),
mounted read-only. The first root that has a valid skill of a name wins; later ones are listed as
shadowed. `refresh()` stats each folder and SKILL.md and re-reads only what changed.

Disclosure: level 1 is the catalog (name + description) in the server instructions, within
`SOMNA_SKILLS_BUDGET` tokens (default 600); level 2 `load` (the SKILL.md body and its file list);
level 3 `read_file` (one file, confined to the skill's folder, at most 256,000 bytes). Tokens are
estimated as characters / 4, as server.py counts the core blocks. When the full catalog does not fit,
the instructions list the names only; when the names do not fit either, they give the count and point
to search. Nothing is silently cut. Search runs on words (FTS5, BM25 over name and description) and,
when the embedder is ready, on meaning too, fused by reciprocal rank; its answer says which.
"""

from __future__ import annotations

import difflib
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from somna import notes
from somna.db import connect
from somna.embeddings import Embedder
from somna.errors import InvalidInput, NotFound
from somna.fusion import rrf
from somna.index import fts_query
from somna.skill_format import (
    MAX_NAME,
    MAX_SKILL_MD,
    NAME_RE,
    Problem,
    Root,
    Skill,
    check_paths,
    parse_skill,
    skill_folders,
)

__all__ = [
    "MAX_NAME",
    "MAX_SKILL_MD",
    "NAME_RE",
    "Catalog",
    "Problem",
    "Root",
    "Skill",
    "check_paths",
    "parse_skill",
    "tokens",
]

MAX_READ = 256_000  # bytes: the level-3 cap for one file
MAX_FILES = 200  # files listed by load
DEFAULT_BUDGET = 600
INLINE_EMBED = 32  # a search embeds up to this many new skills itself; more are left to the background


def tokens(text: str) -> int:
    """Tokens of text, estimated as characters / 4 (rounded up)."""
    return (len(text) + 3) // 4


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return 0, -1


class Catalog:
    """Every skill of the roots, kept current by `refresh()` (a stat per folder and SKILL.md)."""

    def __init__(
        self, roots: list[Root], *, budget: int = DEFAULT_BUDGET, embedder: Embedder | None = None
    ) -> None:
        self.roots = roots
        self.budget = budget
        self.embedder = embedder
        self.skills: dict[str, Skill] = {}  # valid skills by name, the first root wins
        self.invalid: list[Skill] = []
        self.shadowed: list[Skill] = []
        self._sig: tuple[Any, ...] | None = None
        self._parsed: dict[Path, tuple[tuple[int, int, int, int], Skill]] = {}
        self._vectors: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()
        self._db = connect(":memory:", vec=False)
        self._db.execute("CREATE VIRTUAL TABLE s USING fts5(name, description, tokenize='porter unicode61')")
        self.refresh()

    @classmethod
    def for_stores(cls, stores: Mapping[str, Any], mounts: Iterable[Path] = (), **kwargs: Any) -> Catalog:
        """Roots: each store's skills/ in order, then the mounted folders; the same folder only once."""
        roots: list[Root] = []
        seen: set[str] = set()
        for scope, store in stores.items():
            roots.append(Root(Path(store.root) / "skills", scope, True))
        for path in mounts:
            roots.append(Root(Path(path).expanduser(), "mount", False))
        unique = []
        for root in roots:
            key = os.path.realpath(root.path)
            if key not in seen:
                seen.add(key)
                unique.append(root)
        return cls(unique, **kwargs)

    # -- keeping current ------------------------------------------------------------------------
    def signature(self) -> tuple[Any, ...]:
        sig: list[Any] = []
        for root in self.roots:
            sig.append((str(root.path), _stat(root.path)))
            for folder in skill_folders(root.path):
                sig.append((_stat(folder), _stat(folder / "SKILL.md")))
        return tuple(sig)

    def refresh(self) -> bool:
        """Re-read what changed on disk; True when the catalog changed."""
        sig = self.signature()
        if sig == self._sig:
            return False
        skills: dict[str, Skill] = {}
        invalid: list[Skill] = []
        shadowed: list[Skill] = []
        parsed: dict[Path, tuple[tuple[int, int, int, int], Skill]] = {}
        for root in self.roots:
            for folder in skill_folders(root.path):
                key = (*_stat(folder), *_stat(folder / "SKILL.md"))
                cached = self._parsed.get(folder)
                skill = cached[1] if cached and cached[0] == key else parse_skill(folder, root)
                skill.body = ""  # bodies are read again at load time; the catalog keeps front matter only
                parsed[folder] = (key, skill)
                if not skill.valid:
                    invalid.append(skill)
                elif skill.name in skills:
                    shadowed.append(skill)
                else:
                    skills[skill.name] = skill
        with self._lock:
            self.skills, self.invalid, self.shadowed = skills, invalid, shadowed
            self._parsed, self._sig = parsed, sig
            self._db.execute("DELETE FROM s")
            self._db.executemany(
                "INSERT INTO s (rowid, name, description) VALUES (?, ?, ?)",
                [(i, s.name.replace("-", " "), s.description) for i, s in enumerate(skills.values())],
            )
        return True

    def names(self) -> list[str]:
        return sorted(self.skills)

    # -- level 1: the catalog in the instructions -------------------------------------------------
    def instructions(self, budget: int | None = None) -> tuple[str, str]:
        """(a line to go right after the memory guidance, the catalog for the end), together within budget."""
        return self._choose(self.budget if budget is None else budget)[:2]

    def tier(self, budget: int | None = None) -> str:
        """full (names and descriptions), names, count, or none: what the instructions carry."""
        return self._choose(self.budget if budget is None else budget)[2]

    def _choose(self, budget: int) -> tuple[str, str, str]:
        skills = [self.skills[n] for n in self.names()]
        bad = f" ({len(self.invalid)} invalid: `somna skills check` says why)" if self.invalid else ""
        if not skills:
            line = f"\nSkills: none valid{bad}.\n" if self.invalid else ""
            return (line, "", "count") if line and tokens(line) <= budget else ("", "", "none")
        n = len(skills)
        head = f"\nSkills: {n} available{bad}. Before a task one fits, `load_skill` it by name; "
        full = "".join(f"- {s.name}: {s.description}\n" for s in skills)
        short = ", ".join(s.name for s in skills) + "\n"
        tiers = [
            (head + "the catalog is at the end.\n", f"\n## Skills (name: when to use it)\n{full}", "full"),
            (
                head + "their names are at the end; `search_skills` gives descriptions.\n",
                f"\n## Skills: {n} names (descriptions over the {budget}-token budget)\n{short}",
                "names",
            ),
            (
                f"\nSkills: {n}{bad}, too many to list within {budget} tokens: `search_skills` with a few words "
                "finds the one for your task; then `load_skill` it.\n",
                "",
                "count",
            ),
        ]
        for line, listing, tier in tiers:
            if tokens(line) + tokens(listing) <= budget:
                return line, listing, tier
        return "", "", "none"

    def enum(self) -> list[str] | None:
        """The names for the load tool's enum, while they fit the budget; else None (a plain string)."""
        return self.names() if self.tier() in ("full", "names") else None

    # -- level 2 and 3 ----------------------------------------------------------------------------
    def get(self, name: str) -> Skill:
        if not isinstance(name, str) or not name:
            raise InvalidInput("name is empty: pass a skill name from the catalog or search_skills")
        skill = self.skills.get(name)
        if skill is not None:
            return skill
        bad = next((s for s in self.invalid if s.name == name), None)
        if bad is not None:
            raise InvalidInput(f"skill {name!r} is invalid, not served: " + "; ".join(map(str, bad.problems)))
        close = difflib.get_close_matches(name, self.names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        count = len(self.skills)
        raise NotFound(f"no skill {name[:80]!r}{hint} Find one with search_skills ({count} skills exist).")

    def load(self, name: str) -> dict[str, Any]:
        """Level 2: the SKILL.md body (read afresh) and the list of the skill's files."""
        old = self.get(name)
        skill = parse_skill(old.folder, old.root)
        if not skill.valid:
            raise InvalidInput(f"skill {name!r} is invalid: " + "; ".join(map(str, skill.problems)))
        meta = {k: v for k, v in skill.meta.items() if k not in ("name", "description")}
        return {
            "name": name,
            "description": skill.description,
            "scope": skill.root.scope,
            "path": str(skill.folder),
            "version": skill.version,
            "meta": meta,
            "content": skill.body.strip("\n") + "\n",
            "files": self.files(skill),
        }

    def files(self, skill: Skill) -> list[dict[str, Any]]:
        real = os.path.realpath(skill.folder)
        out: list[dict[str, Any]] = []
        for dirpath, dirs, names in os.walk(real):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            for fname in sorted(names):
                path = os.path.join(dirpath, fname)
                rel = os.path.relpath(path, real).replace(os.sep, "/")
                if fname.startswith(".") or rel == "SKILL.md" or not _inside(path, real):
                    continue
                if len(out) == MAX_FILES:
                    return out + [{"path": "…", "note": f"more files not listed (first {MAX_FILES} shown)"}]
                out.append({"path": rel, "size": os.path.getsize(path)})
        return out

    def read_file(self, name: str, file: str) -> dict[str, Any]:
        """Level 3: one file of the skill; never anything outside the skill's folder."""
        skill = self.get(name)
        if not isinstance(file, str) or not file.strip() or "\x00" in file or "\\" in file or len(file) > 500:
            raise InvalidInput("file must be a path relative to the skill folder, e.g. references/guide.md")
        pure = PurePosixPath(file)
        if pure.is_absolute() or re.match(r"^[A-Za-z]:", file) or ".." in pure.parts:
            raise InvalidInput(f"file {file[:100]!r} is outside the skill {name!r}: use one of its files")
        real = os.path.realpath(skill.folder)
        path = os.path.join(real, *pure.parts)
        if not _inside(os.path.realpath(path), real):
            raise InvalidInput(f"file {file[:100]!r} resolves outside the skill {name!r} (symlink); refused")
        if not os.path.isfile(path):
            listed = ", ".join(f["path"] for f in self.files(skill)[:20]) or "none"
            raise NotFound(f"no file {file[:100]!r} in skill {name!r}; its files: {listed}")
        size = os.path.getsize(path)
        if size > MAX_READ:
            raise InvalidInput(f"{file} is {size:,} bytes; the limit is {MAX_READ:,}. It is at {path}")
        raw = Path(path).read_bytes()
        try:
            if b"\x00" in raw:
                raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL")
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(
                f"{file} is a binary file ({size:,} bytes), not returned as text. It is at {path}"
            ) from None
        return {"name": name, "file": pure.as_posix(), "size": size, "content": text}

    # -- search -------------------------------------------------------------------------------------
    def search(self, query: str = "", *, limit: int = 10, offset: int = 0) -> dict[str, Any]:
        """Skills for a few words (words; meaning too once the embedder is ready); no words: list all."""
        limit, offset = max(1, min(int(limit), 100)), max(0, int(offset))
        if not query or not query.strip():
            names = self.names()
            out: dict[str, Any] = {
                "mode": "list",
                "total": len(names),
                "skills": [self.skills[n].entry() for n in names[offset : offset + limit]],
            }
            if offset + limit < len(names):
                out["next_offset"] = offset + limit
            if self.invalid:
                out["invalid"] = [s.entry() for s in self.invalid]
            if self.shadowed:
                out["shadowed"] = [
                    {"name": s.name, "scope": s.root.scope, "path": str(s.folder)} for s in self.shadowed
                ]
            return out
        if len(query) > 2000:
            raise InvalidInput("query is over 2,000 characters: a few words are enough")
        with self._lock:
            skills = list(self.skills.values())
            match = fts_query(query)
            sql = "SELECT rowid FROM s WHERE s MATCH ? ORDER BY bm25(s, 2.0, 1.0) LIMIT 50"
            words = [r for (r,) in self._db.execute(sql, (match,))] if match else []
        rankings = [words]
        why: dict[int, set[str]] = {i: {"words"} for i in words}
        mode, emb, note = "words", self.embedder, None
        if emb is None or not emb.ready:
            reason = getattr(emb, "error", None) if emb is not None else "no embedding model configured"
            note = "words only: " + (reason or "the embedding model is still loading")
        elif (missing := len(self._keys(skills) - self._vectors.keys())) > INLINE_EMBED:
            note = f"words only: the meaning of {missing} skills is being computed in the background"
        elif skills:
            mode = "hybrid"
            rankings.append(self._nearest(query, skills, 50))
            for i in rankings[-1]:
                why.setdefault(i, set()).add("meaning")
        fused = rrf(rankings)
        ranked = sorted(fused, key=lambda i: (-fused[i], skills[i].name))[offset : offset + limit]
        out = {
            "mode": mode,
            "total": len(skills),
            "skills": [
                skills[i].entry() | {"score": round(fused[i] * 100, 3), "matched": "+".join(sorted(why[i]))}
                for i in ranked
            ],
        }
        if note:
            out["note"] = note
        if self.invalid:
            out["invalid_count"] = len(self.invalid)
        return out

    def _texts(self, skills: list[Skill]) -> list[str]:
        return [f"{s.name.replace('-', ' ')}: {s.description}" for s in skills]

    def _keys(self, skills: list[Skill]) -> set[tuple[str, str]]:
        name = self.embedder.name if self.embedder is not None else ""
        return {(name, notes.content_hash(t)) for t in self._texts(skills)}

    def embed(self, skills: list[Skill] | None = None) -> list[tuple[str, str]]:
        """Embed the skills whose text has no vector yet (by content hash); the keys of their vectors.

        The server calls this in the background; a search embeds at most a few missing skills itself.
        """
        emb = self.embedder
        if emb is None or not emb.ready:
            return []
        texts = self._texts(list(self.skills.values()) if skills is None else skills)
        keys = [(emb.name, notes.content_hash(t)) for t in texts]
        todo = [(key, t) for key, t in zip(keys, texts, strict=True) if key not in self._vectors]
        for start in range(0, len(todo), 256):
            batch = todo[start : start + 256]
            for (key, _), vec in zip(batch, emb.embed([t for _, t in batch]), strict=True):
                self._vectors[key] = vec
        return keys

    def _nearest(self, query: str, skills: list[Skill], k: int) -> list[int]:
        assert self.embedder is not None
        keys = self.embed(skills)
        q = self.embedder.embed([query])[0]
        scores = [sum(a * b for a, b in zip(q, self._vectors[key], strict=True)) for key in keys]
        return sorted(range(len(skills)), key=lambda i: -scores[i])[:k]


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.realpath(path), folder]) == folder


def mounts_from_env(env: Mapping[str, str], cwd: Path) -> list[Path]:
    """SOMNA_SKILL_DIRS: folders of skills, os.pathsep-separated; relative ones from the working directory."""
    dirs = env.get("SOMNA_SKILL_DIRS", "").split(os.pathsep)
    return [cwd / Path(p).expanduser() for p in dirs if p.strip()]


def budget_from_env(env: Mapping[str, str]) -> int:
    raw = env.get("SOMNA_SKILLS_BUDGET", str(DEFAULT_BUDGET))
    if not raw.strip().isdigit():
        raise InvalidInput("SOMNA_SKILLS_BUDGET must be a whole number of tokens (0 or more)")
    return int(raw)
