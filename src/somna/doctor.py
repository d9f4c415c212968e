"""`somna doctor`: is the store consistent — files, git and index in agreement — and what is broken?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from somna import history
from somna.errors import BadNote, InvalidInput, NotFound

if TYPE_CHECKING:
    from somna.store import Store


def check(store: Store) -> dict[str, Any]:
    """Read-only: compares every file with the index and git. Changes nothing."""
    files: dict[str, str] = {}
    bad: list[dict[str, str]] = []
    ids: dict[str, str] = {}
    for rel in sorted(store._files()):
        try:
            store._abs(rel)
            _, note, version = store._load(rel)
        except (BadNote, NotFound, InvalidInput, OSError) as exc:
            bad.append({"path": rel, "problem": str(exc)})
            continue
        if rel.startswith("memory/"):
            if note.id in ids:
                bad.append({"path": rel, "problem": f"id {note.id!r} is also used by {ids[note.id]}"})
                continue
            ids[note.id] = rel
        for err in note.errors:
            bad.append({"path": rel, "problem": err})
        files[rel] = version
    rows = {r.path: r for r in store.index.all_rows()}
    broken = {b["path"] for b in bad}
    not_indexed = sorted(p for p in files if p not in rows and p not in broken)
    stale = sorted(p for p, v in files.items() if p in rows and rows[p].version != v)
    orphans = sorted(p for p in rows if p not in files)
    dirty = history.dirty_paths(store.root, "memory", "blocks", "skills", "proposals")
    lock = (store.root / ".git" / "index.lock").exists()
    model = store._model()
    missing_vectors = len(store.index.missing_vectors(model, 100_000)) if model else None
    drift = bool(not_indexed or stale or orphans)
    report: dict[str, Any] = {
        "store": str(store.root), "scope": store.scope, "files": len(files) + len(bad),
        "indexed": len(rows), "bad_files": bad, "not_indexed": not_indexed, "stale_index": stale,
        "index_without_file": orphans, "uncommitted": dirty, "git_lock": lock,
        "missing_vectors": missing_vectors, "proposals": len(list((store.root / "proposals").glob("*.md"))),
    }
    report["consistent"] = not (drift or dirty or lock)
    report["ok"] = report["consistent"] and not bad
    return report


def repair(store: Store) -> dict[str, Any]:
    """Fix what can be fixed without losing anything: stale git lock, index drift, uncommitted edits."""
    with store.locked():
        cleared = history.clear_stale_lock(store.root, older_than=0.0)
    synced = store.sync()
    report = check(store)
    report["repaired"] = {"git_lock_cleared": cleared, "reindexed": synced["indexed"],
                          "removed_from_index": synced["removed"], "committed": synced["committed"]}
    return report


def human_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"store {report['store']} ({report['scope']}): {report['files']} files, {report['indexed']} indexed"]
    for b in report["bad_files"]:
        lines.append(f"  bad file   {b['path']}: {b['problem']} (kept as is; fix it by hand)")
    for key, label in (("not_indexed", "not indexed"), ("stale_index", "stale index"),
                       ("index_without_file", "index row without file"), ("uncommitted", "uncommitted")):
        for p in report[key]:
            lines.append(f"  {label:<10} {p}")
    if report["git_lock"]:
        lines.append("  git lock   .git/index.lock exists (a killed git process?); `somna doctor --repair` clears it")
    if report["missing_vectors"]:
        lines.append(f"  vectors    {report['missing_vectors']} notes not embedded yet (filled in the background)")
    if report["proposals"]:
        lines.append(f"  proposals  {report['proposals']} waiting for review (`somna proposals`)")
    lines.append("consistent" if report["consistent"] else "NOT consistent: run `somna doctor --repair`")
    return lines

