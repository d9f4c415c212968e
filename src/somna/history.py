"""Git as the store's history: every accepted change is a commit whose author says who made it."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from somna.errors import InvalidInput, NotFound, SomnaError
from somna.notes import version_of
from somna.results import Version

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Commits made by somna must not depend on the user's git config (no name set on a fresh
# machine, gpg signing, hooks that prompt): these override it for somna's own commands only.
_BASE = [
    "git",
    "-c",
    "user.name=somna",
    "-c",
    "user.email=somna@localhost",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.quotepath=false",
    "-c",
    "advice.detachedHead=false",
]


class GitError(SomnaError):
    """A git command failed."""


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    date: str
    message: str


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    env.pop("GIT_INDEX_FILE", None)
    return env


LOCK_WAIT = 3.0  # seconds a git command waits out someone else's git holding a lock (a person's `git status`)


def git(
    root: Path, *args: str, check: bool = True, input: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run git in the store. A command that finds git's index or a ref locked by another git (a person's
    `git status` refreshes the index under index.lock) is tried again for up to LOCK_WAIT seconds: that
    git is done in milliseconds, and the daemon's commit of a hand edit must not fail for it."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        proc = subprocess.run(
            [*_BASE, *args],
            cwd=root,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=_env() | (env or {}),
            input=input,
            check=False,
        )
        if proc.returncode == 0 or ".lock': File exists" not in proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def is_repo(root: Path) -> bool:
    return (root / ".git").exists()


def git_dir(root: Path) -> Path:
    """The repository's own git folder: `.git`, or where the `.git` file of a worktree points (a project
    store is a worktree of its project's repository: see project.py)."""
    dotgit = root / ".git"
    if dotgit.is_file():
        try:
            line = dotgit.read_text(encoding="utf-8").strip()
        except OSError:
            return dotgit
        if line.startswith("gitdir:"):
            target = Path(line[7:].strip())
            return target if target.is_absolute() else (root / target).resolve()
    return dotgit


def common_dir(root: Path) -> Path:
    """Where refs and objects live: the git folder itself, or for a worktree its repository's."""
    gitdir = git_dir(root)
    try:
        rel = (gitdir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return gitdir
    return (gitdir / rel).resolve()


def init(root: Path) -> None:
    git(root, "init", "-q", "-b", "main")


MARKER = "somna-git-running"  # in .git/: somna is inside a git command that takes git's locks
GIT_LOCKS = ("index.lock", "HEAD.lock", "ORIG_HEAD.lock", "packed-refs.lock", "config.lock")


def stale_locks(root: Path) -> list[str]:
    """git's lock files in the repository (relative to its git folder): index.lock, HEAD.lock,
    refs/**/*.lock. In a worktree, its own locks and, of the shared repository's refs, only those of
    somna's branches (`somna/...`): the project's other refs belong to the person's own git."""
    gitdir = git_dir(root)
    found = [name for name in GIT_LOCKS if (gitdir / name).exists()]
    common = common_dir(root)
    refs = common / "refs"
    if refs.is_dir():
        locks = sorted(refs.rglob("*.lock"))
        if common != gitdir:
            locks = [p for p in locks if "/somna/" in p.as_posix()]
        found += [os.path.relpath(p, gitdir) for p in locks]
    return found


def interrupted(root: Path) -> bool:
    """Whether a somna process died inside a git command (its marker is still there)."""
    return (git_dir(root) / MARKER).exists()


@contextmanager
def running(root: Path) -> Iterator[None]:
    """Mark that somna is inside git commands that take git's locks (call under the store lock): a
    process killed inside leaves the marker, and the next holder clears its stale locks at once."""
    clear_stale_lock(root)
    marker = git_dir(root) / MARKER
    marker.write_text(str(os.getpid()), encoding="utf-8")
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def git_running_in(root: Path) -> bool:
    """Whether a git process works in the repository now: its lock is not stale, however old (a person's
    `git commit -a` holds index.lock for as long as its editor is open). Read from /proc; where there is
    none, False, and a lock's age alone decides."""
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    top = str(root.resolve())
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text(encoding="utf-8").strip() != "git":
                continue
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == top or cwd.startswith(top + os.sep):
            return True
    return False


def clear_stale_lock(root: Path, older_than: float = 5.0) -> bool:
    """Remove git's lock files left by a killed process. Call only while holding the store lock.

    Every git command that takes a lock runs under the store lock with a marker in .git/; the store
    lock dies with its process, so a marker found by the lock's next holder means the previous one was
    killed inside git, and its locks are stale: they go at once. A lock without the marker belongs to
    someone else's git (a person's `git commit` in the store) and goes only once `older_than` seconds old
    and no git process works in the store any more.
    """
    gitdir = git_dir(root)
    cleared = False
    dead_somna = interrupted(root)
    busy: bool | None = None  # whether someone's git runs in the store now: asked once, if at all
    for name in stale_locks(root):
        lock = gitdir / name
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            continue
        if not dead_somna and age >= older_than and busy is None:
            busy = git_running_in(root)
        if dead_somna or (age >= older_than and not busy):
            lock.unlink(missing_ok=True)
            cleared = True
    if dead_somna:
        (gitdir / MARKER).unlink(missing_ok=True)
    return cleared


def commit(root: Path, paths: list[str], message: str, author: str) -> str | None:
    """Commit exactly these paths (added, changed or removed). Returns the sha, or None if unchanged."""
    if not paths:
        return None
    with running(root):
        # `add -v` names what it staged; only when that is not every path (one was unchanged, or staged
        # before by someone else) does a second command ask git what is staged. Two processes, not four,
        # for a write: git was most of a write's time.
        added = git(root, "add", "-A", "-v", "--", *paths)
        staged = [m.group(1) for m in re.finditer(r"^(?:add|remove) '(.*)'$", added, re.M)]
        if sorted(staged) != sorted(set(paths)):
            staged = git(root, "diff", "--cached", "--no-renames", "--name-only", "-z", "--", *paths).split(
                "\x00"
            )
            staged = [p for p in staged if p]
        if not staged:
            return None
        name = _clean_author(author)
        git(
            root,
            "commit",
            "-q",
            "--no-verify",
            "-m",
            message,
            f"--author={name} <{_email(name)}>",
            "--",
            *staged,
        )
        sha = head(root)
        if sha is None:
            raise GitError("git commit left no HEAD")
        return sha


def tracked(root: Path, paths: list[str]) -> list[str]:
    """Those of paths that git tracks (in its index)."""
    if not paths:
        return []
    return [p for p in git(root, "ls-files", "-z", "--", *paths).split("\x00") if p]


def head(root: Path) -> str | None:
    """The sha HEAD points at (None before the first commit): read from .git when the branch is a loose
    ref, without a process; else from git."""
    gitdir = git_dir(root)
    try:
        ref = (gitdir / "HEAD").read_text(encoding="utf-8").strip()
        if ref.startswith("ref: "):
            sha = (common_dir(root) / ref[5:]).read_text(encoding="utf-8").strip()
        else:
            sha = ref
        if re.fullmatch(r"[0-9a-f]{40}", sha):
            return sha
    except OSError:
        pass
    return resolve(root, "HEAD")


def _clean_author(author: str) -> str:
    cleaned = "".join(c for c in author if c.isprintable() and c not in "<>\n").strip()
    return cleaned[:60] or "unknown"


def _email(name: str) -> str:
    local = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-") or "unknown"
    return f"{local}@somna.local"


def log(root: Path, relpath: str, limit: int = 20) -> list[Commit]:
    out = git(
        root,
        "log",
        f"-n{limit}",
        "--format=%H%x1f%an%x1f%aI%x1f%s%x1e",
        "--",
        relpath,
        check=False,
    )
    commits = []
    for rec in out.split("\x1e"):
        parts = rec.strip().split("\x1f")
        if len(parts) == 4:
            commits.append(Commit(*parts))
    return commits


def merge_file(ours: str, base: str, theirs: str) -> tuple[str, bool]:
    """A line-by-line three-way merge of texts (`git merge-file`): the result, and whether it was clean
    (where it was not, the result holds both sides between conflict markers)."""
    with tempfile.TemporaryDirectory(prefix="somna-merge-") as tmp:
        names = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            names.append(str(path))
        proc = subprocess.run(
            [*_BASE, "merge-file", "-p", "-q", *names],
            capture_output=True,
            env=_env(),
            check=False,
        )
    if proc.returncode < 0 or proc.returncode > 127:
        raise GitError(f"git merge-file failed: {proc.stderr.decode('utf-8', 'replace').strip()}")
    return proc.stdout.decode("utf-8", errors="replace"), proc.returncode == 0


def show(root: Path, sha: str, relpath: str) -> str | None:
    proc = subprocess.run(
        [*_BASE, "show", f"{sha}:{relpath}"],
        cwd=root,
        capture_output=True,
        env=_env(),
        check=False,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")


def diff(root: Path, old: str, new: str, relpath: str) -> str:
    return git(root, "diff", "--no-color", "-U2", old, new, "--", relpath, check=False)


def parent_of(root: Path, sha: str) -> str:
    out = git(root, "rev-parse", "--verify", "-q", f"{sha}^", check=False).strip()
    return out or EMPTY_TREE


def resolve(root: Path, rev: str) -> str | None:
    out = git(root, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False).strip()
    return out or None


def dirty_paths(root: Path, *dirs: str) -> list[str]:
    """Files under dirs that differ from HEAD: new, changed or deleted by someone outside somna."""
    out = git(root, "status", "--porcelain=v1", "-z", "-uall", "--", *dirs, check=False)
    paths: list[str] = []
    entries = out.split("\x00")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        paths.append(path)
        if status[0] in "RC" and i < len(entries):
            paths.append(entries[i])  # the next entry is the rename source
            i += 1
    return paths


def versions(root: Path, relpath: str, limit: int = 10) -> list[Version]:
    """The last `limit` commits of a file, newest first, each with the file's version at it."""
    out: list[Version] = []
    for c in log(root, relpath, limit):
        text = show(root, c.sha, relpath)
        out.append(
            {
                "commit": c.sha[:12],
                "version": version_of(text) if text is not None else None,
                "author": c.author,
                "date": c.date,
                "message": c.message,
            }
        )
    return out


def find(root: Path, relpath: str, to: str | None, *, name: str) -> str:
    """The commit a file is reverted to: the one before its last (`to` None), or the commit or version `to`
    names (a prefix of a commit's sha, or the file's version at some commit). `name`: the file as errors
    call it (a memory's id)."""
    commits = log(root, relpath, 200)
    if to is None:
        if len(commits) < 2:
            raise InvalidInput(f"{name} has only one version; nothing to revert to")
        return commits[1].sha
    if not re.fullmatch(r"[0-9a-f]{4,40}", to or ""):
        raise InvalidInput("`to` must be a commit or version from history (hex)")
    for c in commits:
        if c.sha.startswith(to):
            return c.sha
    for c in commits:
        text = show(root, c.sha, relpath)
        if text is not None and version_of(text) == to:
            return c.sha
    raise NotFound(f"{to!r} is not a commit or version in the history of {name}")
