"""`somna doctor`: is the store consistent and safe — files, git and index in agreement — and what is broken?

Checks, read-only:
- every file in memory/ and blocks/ parses; those that do not (binary, huge, not UTF-8, broken front
  matter, a duplicate id) are *quarantined*: left where they are, untouched, out of the index and out of
  git (which keeps their last good version), listed here for a person to fix;
- the index agrees with the files (nothing missing, stale or orphaned) and its database is sound;
- git: nothing uncommitted, no lock file left by a killed process, HEAD and its objects readable;
- no temp file of an interrupted write is left next to the notes;
- the store is the user's alone (0700 on the folder, 0600 on .somna's files), where the platform has modes;
- provenance: notes without `trust`, notes that read like instructions, likely secrets in stored notes.

`--repair` fixes what it can without losing anything: clears stale git locks, moves interrupted writes to
.somna/recovered/, rebuilds a corrupt index, re-indexes drift, commits edits made outside somna, and
tightens permissions. It never deletes, rewrites or moves a note: quarantined files and secrets found in
notes are for a person to decide on.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

from somna import gitsync, history, notes, redaction, untrusted
from somna.errors import BadNote, InvalidInput, NotFound
from somna.layout import TRACKED, private
from somna.store import Store

# Every write of content (memory/, blocks/, proposals/, skills/) happens under the store lock; so a temp file
# found while holding it belongs to a writer that died. (Store.init writes blocks unlocked, before anyone
# else can know the store.)
TEMP_AGE = 0.0


def temp_files(root: Path) -> list[str]:
    """Temp files of atomic writes (`.tmp-*`) next to the store's content."""
    found: list[str] = []
    for sub in TRACKED:  # somna.toml is a file: no temp files under it
        base = root / sub
        if base.is_dir():
            found += [p.relative_to(root).as_posix() for p in base.rglob(".tmp-*") if p.is_file()]
    return sorted(found)


def loose_permissions(root: Path) -> list[str]:
    """The store folder, .somna/ and its files when others than the user can read or enter them.

    A private (0700) store folder keeps everything below it private, whatever the files' own modes."""
    if sys.platform == "win32" or not stat.S_IMODE(root.stat().st_mode) & 0o077:
        return []
    out: list[str] = []
    for path in [root, root / ".somna", *sorted((root / ".somna").glob("*"))]:
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue
        if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            continue
        if stat.S_IMODE(mode) & 0o077:
            rel = path.relative_to(root).as_posix() if path != root else "."
            out.append(f"{rel} ({stat.filemode(mode)})")
    return out


def _git_sound(root: Path) -> str | None:
    """None when HEAD resolves and git can read its objects; else what git says."""
    if history.head(root) is None:
        return "HEAD does not resolve to a commit"
    try:
        history.git(root, "fsck", "--connectivity-only", "--no-progress", "--no-dangling")
    except history.GitError as exc:
        return str(exc)[:300]
    return None


def _index_sound(store: Store) -> str | None:
    try:
        row = store.index.conn.execute("PRAGMA quick_check").fetchone()
    except Exception as exc:  # any driver error means the derived index cannot be trusted
        return str(exc)[:200]
    return None if row and row[0] == "ok" else str(row[0] if row else "no answer")[:200]


def check(store: Store) -> dict[str, Any]:
    """Read-only: compares every file with the index and git, and checks safety. Changes nothing."""
    files: dict[str, str] = {}
    bad: list[dict[str, str]] = []
    ids: dict[str, str] = {}
    untrusted_notes: dict[str, list[str]] = {"missing_trust": [], "instructions": [], "secrets": []}
    for rel in sorted(store.layout.files(), key=lambda r: (r.count("/"), r)):  # the indexer's order
        try:
            _, note, version = store.layout.load(rel)
        except (BadNote, NotFound, InvalidInput, OSError) as exc:
            bad.append({"path": rel, "problem": str(exc)})
            continue
        if rel.startswith("memory/"):
            if note.id in ids and note.id_from_name:
                note.meta["id"] = notes.path_id(rel)  # memory/a/x.md and memory/b/x.md: a-x, b-x
            if note.id in ids:
                bad.append({"path": rel, "problem": f"id {note.id!r} is also used by {ids[note.id]}"})
                continue
            ids[note.id] = rel
            if "trust" not in note.meta and "source" in note.meta:  # a file a person wrote needs neither
                untrusted_notes["missing_trust"].append(rel)
        for err in note.errors:
            bad.append({"path": rel, "problem": err})
        text = f"{note.title}\n{note.body}"
        if untrusted.flags(text):
            untrusted_notes["instructions"].append(rel)
        kinds = sorted({f.kind for f in redaction.scan(text)})
        if kinds:
            untrusted_notes["secrets"].append(f"{rel} ({', '.join(kinds)})")  # kinds only, never the values
        files[rel] = version
    rows = {r.path: r for r in store.index.all_rows()}
    broken = {b["path"] for b in bad}
    not_indexed = sorted(p for p in files if p not in rows and p not in broken)
    stale = sorted(p for p, v in files.items() if p in rows and rows[p].version != v)
    orphans = sorted(p for p in rows if p not in files)
    pending = store.pending_commits()  # a running server commits these within a second: not strays
    dirty = [p for p in history.dirty_paths(store.root, *TRACKED) if p not in broken and p not in pending]
    locks = history.stale_locks(store.root)
    temps = temp_files(store.root)
    perms = loose_permissions(store.root)
    git_problem = _git_sound(store.root)
    index_problem = _index_sound(store)
    model = store.indexer.model()
    missing_vectors = len(store.index.missing_vectors(model, 100_000)) if model else None
    drift = bool(not_indexed or stale or orphans or index_problem)
    report: dict[str, Any] = {
        "store": str(store.root),
        "scope": store.scope,
        "files": len(files) + len(bad),
        "indexed": len(rows),
        "bad_files": bad,
        "quarantined": sorted(broken),
        "not_indexed": not_indexed,
        "stale_index": stale,
        "index_without_file": orphans,
        "index_problem": index_problem,
        "uncommitted": dirty,
        "pending_commits": pending,
        "git_lock": bool(locks),
        "git_locks": locks,
        "git_interrupted": history.interrupted(store.root),
        "sync_interrupted": gitsync.interrupted(store.layout.somna),
        "git_problem": git_problem,
        "interrupted_writes": temps,
        "loose_permissions": perms,
        "missing_vectors": missing_vectors,
        "proposals": len(list((store.root / "proposals").glob("*.md"))),
        "provenance": untrusted_notes,
    }
    report["consistent"] = not (drift or dirty or locks or temps or git_problem or report["sync_interrupted"])
    report["ok"] = report["consistent"] and not bad and not perms
    return report


def _recover_temps(store: Store) -> list[str]:
    """Move temp files of interrupted writes to .somna/recovered/ (never deleted: a person may want one)."""
    moved: list[str] = []
    dest_root = store.layout.recovered_dir()
    for rel in temp_files(store.root):
        src = store.root / rel
        try:
            if time.time() - src.stat().st_mtime < TEMP_AGE:
                continue  # a live writer outside the store lock may still rename it into place
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            moved.append(rel)
        except OSError:
            continue
    return moved


def _record_trust(store: Store) -> int:
    """Write down the trust of memories from before provenance (guessed from `source`), in one commit."""
    todo = []
    for row in store.index.all_rows("memory"):
        try:
            _, note, version = store.layout.load(row.path)
        except (BadNote, NotFound, InvalidInput):
            continue
        if "trust" not in note.meta and "source" in note.meta:  # never add front matter to a person's file
            todo.append((note.id, version, untrusted.effective(note.meta)))
    if todo:
        with store.batch(
            f"record the trust of {len(todo)} memories written before provenance", "somna-doctor"
        ):
            for ref, version, trust in todo:
                store.edit(ref, "meta", version, author="somna-doctor", meta={"trust": trust}, policy="apply")
    return len(todo)


def repair(store: Store) -> dict[str, Any]:
    """Fix what can be fixed without losing anything (see the module's docstring)."""
    with store.locked():
        interrupted = history.interrupted(store.root)
        # somna's own stale locks go at once (its marker says so); another git's only once 5 s old: a person's
        # `git commit` in the store may be running right now
        cleared = history.clear_stale_lock(store.root, older_than=5.0)
        moved = _recover_temps(store)
        rebuilt = _index_sound(store) is not None
        if rebuilt:  # derived data: set aside (kept in .somna/recovered/) and built again by the sync below
            store.rebuild_index()
    tightened = [
        p
        for p in [store.root, store.layout.somna, *sorted(store.layout.somna.glob("*"))]
        if (p.is_dir() or p.is_file()) and not p.is_symlink() and private(p)
    ]
    synced = store.sync(commit_as="somna-doctor")
    recorded = _record_trust(store)
    report = check(store)
    report["repaired"] = {
        "git_lock_cleared": cleared,
        "git_interrupted": interrupted,
        "reindexed": synced["indexed"],
        "removed_from_index": synced["removed"],
        "committed": synced["committed"],
        "recovered_writes": moved,
        "index_rebuilt": rebuilt,
        "trust_recorded": recorded,
        "permissions_tightened": [str(p.relative_to(store.root)) for p in tightened],
    }
    return report


def human_lines(report: dict[str, Any]) -> list[str]:
    lines = [
        f"store {report['store']} ({report['scope']}): {report['files']} files, {report['indexed']} indexed"
    ]
    for b in report["bad_files"]:
        lines.append(
            f"  quarantined {b['path']}: {b['problem']} (left as is, out of the index and of git; "
            "fix it by hand)"
        )
    for key, label in (
        ("not_indexed", "not indexed"),
        ("stale_index", "stale index"),
        ("index_without_file", "index row without file"),
        ("uncommitted", "uncommitted"),
        ("interrupted_writes", "temp file of an interrupted write"),
        ("loose_permissions", "readable by others"),
    ):
        for p in report[key]:
            lines.append(f"  {label:<10} {p}")
    if report["index_problem"]:
        lines.append(f"  index      index.db is damaged ({report['index_problem']}); --repair rebuilds it")
    if report["git_locks"]:
        lines.append(
            f"  git lock   {', '.join(report['git_locks'])} in .git (a killed git process?); "
            "`somna doctor --repair` clears them"
        )
    if report["git_problem"]:
        lines.append(f"  git        {report['git_problem']}")
    if report["sync_interrupted"]:
        lines.append("  sync       a sync was killed while it moved the files; opening the store finishes it")
    prov = report["provenance"]
    if prov["instructions"]:
        lines.append(
            f"  flagged    {len(prov['instructions'])} notes read like instructions to an agent: "
            + ", ".join(prov["instructions"][:5])
        )
    if prov["secrets"]:
        lines.append(
            f"  secrets    likely secrets in {len(prov['secrets'])} notes (edit them by hand): "
            + ", ".join(prov["secrets"][:5])
        )
    if prov["missing_trust"]:
        lines.append(
            f"  provenance {len(prov['missing_trust'])} memories have no `trust` (written before it; "
            "taken from `source`)"
        )
    if report["missing_vectors"]:
        lines.append(
            f"  vectors    {report['missing_vectors']} notes not embedded yet (filled in the background)"
        )
    if report["proposals"]:
        lines.append(f"  proposals  {report['proposals']} waiting for review (`somna proposals`)")
    if report.get("pending_commits"):
        lines.append(
            f"  pending    {len(report['pending_commits'])} changes wait for their commit (a running "
            "server makes it within a second; else the next somna command)"
        )
    for key, value in (report.get("repaired") or {}).items():
        if value:
            lines.append(f"  repaired   {key.replace('_', ' ')}: {value}")
    lines.append("consistent" if report["consistent"] else "NOT consistent: run `somna doctor --repair`")
    return lines
