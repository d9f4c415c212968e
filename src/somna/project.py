"""A project store that travels with its project: the store lives on its own orphan branch of the
project's repository (`somna/memory`), checked out as a git worktree at `.somna-store/`, which the
project's branches ignore. So `git clone` brings the store's commits along (as `origin/somna/memory`),
and one `somna init --project` in the clone checks them out; the project's own branches never see a
somna commit. docs/sharing.md says why this beats a submodule, a subtree or a repository of its own.
"""

from __future__ import annotations

from pathlib import Path

from somna import gitsync, history, layout
from somna.config import PROJECT_STORE_DIR
from somna.errors import InvalidInput

BRANCH = "somna/memory"
IGNORE_LINE = f"/{PROJECT_STORE_DIR}/"


def project_root(cwd: Path) -> Path:
    """The top of the git project around `cwd` (outside its store's worktree)."""
    for d in (cwd, *cwd.parents):
        if d.name == PROJECT_STORE_DIR:
            continue
        if (d / ".git").exists() and (d / PROJECT_STORE_DIR) != cwd:
            return d
    raise InvalidInput(
        f"{cwd} is not inside a git project: `git init` (or clone) the project first, or use "
        "`somna init PATH` for a store of its own"
    )


def setup(project: Path) -> tuple[Path, str]:
    """Create the project's store, or check out the team's: (its root, what was done)."""
    project = project.resolve()
    store = project / PROJECT_STORE_DIR
    if store.exists() and (store / ".git").is_dir():
        raise InvalidInput(
            f"{store} is a git repository of its own (an older somna's project store); move it aside, run "
            f"`somna init --project`, and copy its memory/ files into the new {store}"
        )
    if store.exists() and any(store.iterdir()) and not layout.is_store(store):
        raise InvalidInput(f"{store} exists and is not a somna store; move it aside first")
    remote = _origin(project)
    if layout.is_store(store):
        done = "store already at"
    else:
        done = _checkout(project, store, remote)
    layout.create(store)
    ignore(project)
    if remote is not None:
        url = history.git(project, "remote", "get-url", "--push", remote).strip()
        gitsync.configure(store, url, name=remote, branch=BRANCH)
    return store, done


def _origin(project: Path) -> str | None:
    names = history.git(project, "remote", check=False).split()
    return "origin" if "origin" in names else (names[0] if names else None)


def _checkout(project: Path, store: Path, remote: str | None) -> str:
    """Check the branch out at `store`: this clone's, the remote's (the team's memory), or a new one."""
    if remote is not None and history.resolve(project, f"refs/heads/{BRANCH}") is None:
        # a clone has the team's store already (origin/somna/memory); fetch in case it came later. Offline:
        # a new store now, merged with the team's at the first sync.
        ref = f"refs/heads/{BRANCH}:refs/remotes/{remote}/{BRANCH}"
        history.git(project, "fetch", "-q", "--no-tags", remote, ref, check=False)
    if history.resolve(project, f"refs/heads/{BRANCH}") is not None:
        done = "checked out this clone's store at"
    elif remote is not None and history.resolve(project, f"refs/remotes/{remote}/{BRANCH}") is not None:
        history.git(project, "branch", "-q", BRANCH, f"refs/remotes/{remote}/{BRANCH}")
        done = "joined the team's store at"
    else:
        root = history.git(
            project, "commit-tree", history.EMPTY_TREE, "-m", "somna: the project's memory (its own branch)"
        ).strip()
        history.git(project, "branch", "-q", BRANCH, root)
        done = "created store at"
    if store.exists():
        store.rmdir()  # empty (checked above): git worktree add wants to make it
    history.git(project, "worktree", "add", "-q", str(store), BRANCH)
    return done


def ignore(project: Path) -> bool:
    """Keep the store off the project's branches: a line in the project's .gitignore (for the person to
    commit) and in .git/info/exclude (in force at once). True if .gitignore changed."""
    exclude = history.common_dir(project) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text(encoding="utf-8").splitlines() if exclude.exists() else []
    if IGNORE_LINE not in lines:
        exclude.write_text("\n".join([*lines, IGNORE_LINE]) + "\n", encoding="utf-8")
    gitignore = project / ".gitignore"
    text = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    if IGNORE_LINE in text.splitlines() or f"{PROJECT_STORE_DIR}/" in text.splitlines():
        return False
    gitignore.write_text(
        text + ("" if not text or text.endswith("\n") else "\n") + IGNORE_LINE + "\n", "utf-8"
    )
    return True
