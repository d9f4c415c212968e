"""The git side of `somna sync`: a store's remote, fetching, the three-way merge computed off to the side,
moving the store to the merged commit, and pushing.

Nothing here touches the working tree until the merge is whole: `git merge-tree` computes it in the object
database, the conflicts are resolved in Python (merging.py), the result becomes a commit, and one
fast-forward moves the store onto it. A process killed during that fast-forward leaves a marker
(`.somna/sync-target`) that the next holder of the store lock finishes (`recover`), so a store always
opens either before or after a sync, never half-way.

The remote is the person's: git runs with their credential helpers and ssh keys, never with a credential
of somna's, and a store is pushed only to the URL it was configured with (`somna.url` in its git config).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from somna import history
from somna.errors import InvalidInput, SomnaError
from somna.history import GitError

TARGET = "sync-target"  # in .somna/: the commit a sync is moving the store to
MAX_PUSH_TRIES = 5


class RemoteUnreachable(SomnaError):
    """The remote cannot be reached now (offline, a host that does not answer, a moved repository)."""


class PushRejected(SomnaError):
    """The remote refused the push (no permission, a protected branch, a hook)."""


@dataclass(frozen=True)
class Remote:
    name: str  # a git remote of the store's repository
    branch: str  # the branch on it that holds the store
    url: str  # the URL the store was configured to push to


def config(root: Path, key: str) -> str | None:
    out = history.git(root, "config", "--get", key, check=False).strip()
    return out or None


def has_credential(url: str) -> bool:
    """Whether a URL carries a password or token (https://user:secret@host): somna never records one."""
    return re.match(r"^[a-z][a-z0-9+.\-]*://[^/@\s]*:[^/@\s]*@", url, re.I) is not None


def configure(root: Path, url: str, *, name: str = "origin", branch: str = "main") -> Remote:
    """Record where this store is pushed: the git remote `name` at `url`, branch `branch`."""
    if has_credential(url):
        raise InvalidInput(
            "the remote URL holds a password or token; somna never stores a credential: use a URL without "
            "it, and let git's credential helper or your ssh key answer"
        )
    current = config(root, f"remote.{name}.url")
    if current is not None and current != url and history.git_dir(root) != history.common_dir(root):
        name = "somna"  # a project store shares its project's remotes: it gets one of its own, origin stays
        current = config(root, f"remote.{name}.url")
    if current is None:
        history.git(root, "remote", "add", name, url)
    elif current != url:
        history.git(root, "remote", "set-url", name, url)
    history.git(root, "config", "somna.remote", name)
    history.git(root, "config", "somna.branch", branch)
    history.git(root, "config", "somna.url", url)
    return Remote(name, branch, url)


def remote_of(root: Path) -> Remote | None:
    """The store's configured remote, or None when it has none (a store on this machine only)."""
    name, branch, url = config(root, "somna.remote"), config(root, "somna.branch"), config(root, "somna.url")
    if not (name and branch and url):
        return None
    return Remote(name, branch, url)


def check_url(root: Path, remote: Remote) -> None:
    """Refuse to push anywhere but the URL the store was configured with."""
    now = history.git(root, "remote", "get-url", "--push", remote.name, check=False).strip()
    if now != remote.url:
        raise InvalidInput(
            f"the remote {remote.name!r} now points at {now or 'nothing'!r}, but this store was configured to "
            f"sync with {remote.url!r}; nothing was pushed. To sync with the new place on purpose: "
            f"`somna sync --remote {now or 'URL'}`"
        )


def tracking_ref(remote: Remote) -> str:
    return f"refs/remotes/{remote.name}/{remote.branch}"


def fetch(root: Path, remote: Remote) -> str | None:
    """Fetch the store's branch; its commit, or None when the remote has no such branch yet."""
    ref = tracking_ref(remote)
    with history.running(root):
        try:
            history.git(root, "fetch", "-q", "--no-tags", remote.name, f"+refs/heads/{remote.branch}:{ref}")
        except GitError as exc:
            text = str(exc)
            if "couldn't find remote ref" in text or "could not find remote ref" in text.lower():
                return None
            raise RemoteUnreachable(_first_line(text)) from None
    return history.resolve(root, ref)


def _first_line(text: str) -> str:
    """What a failed git command says, in a line: the server's own words first (`remote: ...`)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for prefix in ("remote:", "fatal:", "error:"):
        wanted = [ln.split(prefix, 1)[1].strip() for ln in lines if prefix in ln]
        if any(wanted):
            return next(w for w in wanted if w)[:300]
    return (lines or ["git failed"])[0][:300]


def is_ancestor(root: Path, a: str, b: str) -> bool:
    """Whether commit `a` is in the history of commit `b` (or is it)."""
    return history.git(root, "merge-base", a, b, check=False).strip() == history.resolve(root, a)


@dataclass
class Conflict:
    path: str
    stages: dict[int, str]  # 1 base, 2 ours, 3 theirs -> blob


def merge_tree(root: Path, ours: str, theirs: str) -> tuple[str, list[Conflict]]:
    """The merged tree of two commits, computed without touching the working tree, and its conflicts."""
    out = history.git(
        root,
        "merge-tree",
        "--write-tree",
        "-z",
        "--no-messages",
        "--allow-unrelated-histories",
        ours,
        theirs,
        check=False,
    )
    parts = out.split("\x00")
    tree = parts[0].strip()
    if not re.fullmatch(r"[0-9a-f]{40,64}", tree):
        raise GitError(f"git merge-tree failed: {out.strip()[:300]}")
    found: dict[str, Conflict] = {}
    for entry in parts[1:]:
        if not entry:
            break
        m = re.match(r"^(\d+) ([0-9a-f]+) (\d)\t(.*)$", entry, re.S)
        if m is None:
            continue
        conflict = found.setdefault(m.group(4), Conflict(m.group(4), {}))
        conflict.stages[int(m.group(3))] = m.group(2)
    return tree, list(found.values())


def changed_on_both(root: Path, ours: str, theirs: str) -> tuple[str | None, list[str]]:
    """The merge base of two commits, and the files each side changed since it (None: unrelated)."""
    base = history.git(root, "merge-base", ours, theirs, check=False).strip() or None
    if base is None:
        return None, []

    def changed(commit: str) -> set[str]:
        out = history.git(root, "diff", "--no-renames", "--name-only", "-z", base, commit)
        return {p for p in out.split("\x00") if p}

    return base, sorted(changed(ours) & changed(theirs))


def blob_text(root: Path, blob: str | None) -> str | None:
    if blob is None:
        return None
    return history.git(root, "cat-file", "blob", blob)


def last_change(root: Path, commit: str, path: str) -> int:
    """When a file last changed on the side of `commit` (seconds since the epoch; 0 if never)."""
    out = history.git(root, "log", "-1", "--format=%ct", commit, "--", path, check=False).strip()
    return int(out) if out.isdigit() else 0


def build_commit(
    root: Path,
    tree: str,
    files: dict[str, str | None],
    parents: list[str],
    message: str,
    author: str,
) -> str:
    """A commit of `tree` with `files` replaced (None: removed), on `parents`; nothing checked out."""
    with tempfile.TemporaryDirectory(prefix="somna-merge-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        history.git(root, "read-tree", tree, env=env)
        for path, text in sorted(files.items()):
            if text is None:
                history.git(root, "update-index", "--force-remove", "--", path, env=env)
                continue
            blob = history.git(root, "hash-object", "-w", "--stdin", input=text).strip()
            history.git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        new_tree = history.git(root, "write-tree", env=env).strip()
    args = ["commit-tree", new_tree]
    for parent in parents:
        args += ["-p", parent]
    email = f"{author}@somna.local"
    who = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": email}
    return history.git(root, *args, "-m", message, env=who).strip()


def move_to(root: Path, somna_dir: Path, target: str) -> None:
    """Move the store (HEAD, index, files) onto `target`, a descendant of HEAD; a kill -9 inside is
    finished by `recover`. Call under the store lock, with everything committed."""
    marker = somna_dir / TARGET
    marker.write_text(target + "\n", encoding="utf-8")
    with history.running(root):
        try:
            history.git(root, "merge", "-q", "--ff-only", "--no-verify", target)
        except GitError as exc:
            marker.unlink(missing_ok=True)
            raise GitError(
                f"the store could not be moved onto the merged commit: {_first_line(str(exc))} (a file there "
                "that git does not track, e.g. a note somna set aside as unreadable, is in the way: move it)"
            ) from None
    marker.unlink(missing_ok=True)


def interrupted(somna_dir: Path) -> bool:
    """Whether a sync was killed while it moved the store onto a merged commit (`recover` finishes it)."""
    return (somna_dir / TARGET).exists()


def recover(root: Path, somna_dir: Path) -> bool:
    """Finish a sync that was killed while it moved the store (call under the store lock). True if it did."""
    marker = somna_dir / TARGET
    try:
        target = marker.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    with history.running(root):
        if re.fullmatch(r"[0-9a-f]{40,64}", target) and history.resolve(root, target):
            history.git(root, "reset", "-q", "--hard", target)
    marker.unlink(missing_ok=True)
    return True


def push(root: Path, remote: Remote) -> None:
    """Push HEAD to the store's branch; a push that the remote refuses raises PushRejected (a non-fast-
    forward says so: the caller fetches and merges again)."""
    with history.running(root):
        try:
            history.git(root, "push", "-q", remote.name, f"HEAD:refs/heads/{remote.branch}")
        except GitError as exc:
            text = str(exc)
            raced = (
                "non-fast-forward",
                "fetch first",
                "[rejected]",
                "failed to update ref",
                "cannot lock ref",
            )
            if any(words in text for words in raced):  # someone pushed in between: fetch, merge, try again
                raise PushRejected("non-fast-forward") from None
            if "Could not read from remote" in text or "unable to access" in text or "resolve host" in text:
                raise RemoteUnreachable(_first_line(text)) from None
            raise PushRejected(_first_line(text)) from None
    history.git(root, "update-ref", tracking_ref(remote), "HEAD")


def outgoing(root: Path, remote_head: str | None) -> list[tuple[str, str, str]]:
    """(commit, path, added text) of every change in commits the remote does not have yet, merges left out
    (what they bring is the two sides' own)."""
    rng = [f"{remote_head}..HEAD"] if remote_head else ["HEAD"]
    out = history.git(
        root,
        "log",
        "-p",
        "--no-merges",
        "--no-color",
        "--no-ext-diff",
        "-U0",
        "--format=%x1e%H",
        *rng,
        check=False,
    )
    found: list[tuple[str, str, str]] = []
    for record in out.split("\x1e"):
        lines = record.split("\n")
        sha = lines[0].strip()
        path, added = "", list[str]()
        for line in lines[1:]:
            if line.startswith("+++ "):
                if path and added:
                    found.append((sha, path, "\n".join(added)))
                path, added = (line[6:] if line.startswith("+++ b/") else ""), []
            elif line.startswith("+") and path:
                added.append(line[1:])
        if path and added:
            found.append((sha, path, "\n".join(added)))
    return found
