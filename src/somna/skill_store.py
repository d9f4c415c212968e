"""Writing skills into a store: proposing a new skill or an edit to one, accepting it, installing skill packs.

Every change is a git commit whose author says who made it. A proposed skill waits in `proposals/` for
review unless a `[policy]` pattern of the store's somna.toml says otherwise (e.g. `"skills/**" = "apply"`);
skills are instructions that agents follow, so unlike memories they are reviewed by default. A proposal
file has the store's own format (front matter: target `skill:<name>`, op, base_version, author, reason,
and the proposed SKILL.md as `text`; a diff in the body for the reviewer) in the store's one queue, so
`somna proposals` lists, accepts and rejects it like any other, once `register` has told the store how
to accept a proposal of kind `skill`.

somna's own skills ship in the repository's top-level `skills/` folder; an installed wheel carries them as
package data in `somna/_skills/`. `install` copies a folder of skills into a store, in one commit.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from pathlib import Path
from typing import Any

from somna import history, notes
from somna.errors import Conflict, InvalidInput, NotFound
from somna.proposals import Proposal, diff_body
from somna.skill_format import (
    MAX_NAME,
    MAX_SKILL_MD,
    NAME_RE,
    NAME_RULE,
    check_paths,
    check_text,
    skill_folders,
)
from somna.store import Store

PACKAGED = Path(__file__).resolve().parent / "_skills"  # in a wheel
CHECKOUT = Path(__file__).resolve().parents[2] / "skills"  # a source checkout or editable install


def shipped_dir() -> Path:
    """Where somna's own skills are: package data first, then the source checkout."""
    checkout = CHECKOUT if (CHECKOUT.parent / "pyproject.toml").is_file() else None
    for cand in (PACKAGED, checkout):
        if cand is not None and any((f / "SKILL.md").is_file() for f in skill_folders(cand)):
            return cand
    raise NotFound(
        f"somna's own skills are not shipped with this installation (looked in {PACKAGED} and "
        f"{CHECKOUT}); install from a folder with --from"
    )


def _path(store: Store, name: str) -> tuple[str, Path]:
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > MAX_NAME:
        raise InvalidInput(f"skill name {str(name)[:80]!r} is not valid: {NAME_RULE}")
    rel = f"skills/{name}/SKILL.md"
    path = store.root / rel
    if os.path.commonpath([os.path.realpath(path), str(store.root)]) != str(store.root):
        raise InvalidInput(f"skills/{name} resolves outside the store (symlink); refused")
    return rel, path


def _current(path: Path) -> tuple[str, str] | None:
    """(text, version) of a SKILL.md, or None when there is none."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return raw.decode("utf-8", errors="replace"), notes.version_of(raw)


def _check_base(store: Store, name: str, current: tuple[str, str] | None, base: str | None) -> None:
    if current is None and base:
        raise NotFound(
            f"skill {name!r} does not exist in the {store.scope} store; omit base_version to "
            "propose it as a new skill"
        )
    if current is not None and not base:
        raise InvalidInput(
            f"skill {name!r} exists in the {store.scope} store: load_skill it and pass its "
            "`version` as base_version"
        )
    if current is not None and base != current[1]:
        raise Conflict(
            f"skill {name!r} changed since version {base!r}; it is now {current[1]!r}. Re-apply "
            "your edit to the current text (included), with that version as base_version.",
            current_version=current[1],
            current_text=current[0],
        )


def _validate(name: str, text: str, folder: Path) -> list[str]:
    """Refuse a SKILL.md with errors; return its warnings."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("content is empty: the whole SKILL.md, front matter (name, description) and body")
    if len(text.encode("utf-8")) > MAX_SKILL_MD:
        raise InvalidInput(f"content is over {MAX_SKILL_MD:,} bytes: move detail in references/")
    _, _, _, problems = check_text(text, name, folder, "SKILL.md")
    errors = [str(p) for p in problems if p.severity == "error"]
    if errors:
        raise InvalidInput("the proposed SKILL.md is not a valid skill: " + "; ".join(errors))
    return [str(p) for p in problems if p.severity != "error"]


def _policy(store: Store, rel: str) -> str:
    for pattern, action in store.config.policy.items():
        if fnmatch.fnmatch(rel, pattern):
            return action
    return "propose"


def propose(
    store: Store,
    name: str,
    content: str,
    *,
    author: str,
    base_version: str | None = None,
    reason: str | None = None,
    policy: str | None = None,
) -> dict[str, Any]:
    """A new skill (no base_version) or a new version of one: validated, then queued or applied by policy."""
    rel, path = _path(store, name)
    current = _current(path)
    _check_base(store, name, current, base_version)
    warnings = _validate(name, content, path.parent)
    op = "replace" if current else "create"
    why = f": {reason.strip()[:200]}" if reason and reason.strip() else ""
    if (policy or _policy(store, rel)) == "apply":
        out = _apply(store, name, content, base_version, author, f"{op} skill:{name}{why}")
    else:
        proposal = Proposal(
            id="",
            kind="skill",
            target=f"skill:{name}",
            title=f"{op} skill:{name}",
            author=author,
            created=notes.now_iso(),
            reason=reason,
            fields={"op": op, "base_version": base_version or "", "text": content},
            body=diff_body(current[0] if current else "", content, rel),
        )
        pid = store.queue.add(proposal, f"propose {op} on skill:{name}{why}")
        out = {
            "status": "proposed",
            "proposal": pid,
            "id": f"skill:{name}",
            "scope": store.scope,
            "note": "queued for review (skills are reviewed by default); nothing changed yet",
        }
    return out | ({"warnings": warnings} if warnings else {})


def _apply(
    store: Store,
    name: str,
    text: str,
    base: str | None,
    author: str,
    message: str,
) -> dict[str, Any]:
    """Write and commit a SKILL.md under the store lock; put back as it was if the commit fails."""
    rel, path = _path(store, name)
    with store.locked():
        current = _current(path)
        _check_base(store, name, current, base)
        notes.atomic_write(path, text)
        try:
            sha = store.commit([rel], message, author)
        except Exception:
            if current is not None:
                notes.atomic_write(path, current[0])
            else:
                path.unlink(missing_ok=True)
            raise
    return {
        "status": "applied",
        "id": f"skill:{name}",
        "name": name,
        "scope": store.scope,
        "version": notes.version_of(text),
        "previous_version": base,
        "commit": sha,
    }


def accept(store: Store, proposal: Proposal, author: str, force: bool = False) -> dict[str, Any]:
    """Write the proposed SKILL.md, its base version checked again (the store's accept commits)."""
    name = proposal.target[len("skill:") :]
    text = str(proposal.fields.get("text") or "")
    _validate(name, text, _path(store, name)[1].parent)
    base = str(proposal.fields.get("base_version") or "") or None
    return _apply(store, name, text, base, author, f"{proposal.fields.get('op')} skill:{name}")


def register(store: Store) -> None:
    store.register_kind("skill", accept)


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {
        n for n in names if n.startswith(".") or n == "__pycache__" or os.path.islink(os.path.join(folder, n))
    }


def _tree(folder: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _ignore(dirpath, dirs)]
        for f in set(files) - _ignore(dirpath, files):
            path = Path(dirpath) / f
            out[path.relative_to(folder).as_posix()] = path.read_bytes()
    return out


def install(
    store: Store, source: Path | None = None, *, force: bool = False, author: str = "somna"
) -> dict[str, Any]:
    """Copy every skill of a folder (default: somna's own) into the store's skills/, in one commit."""
    src = Path(source).expanduser() if source else shipped_dir()
    skills = check_paths([src])
    if not skills:
        raise NotFound(f"no skill folders in {src}")
    errors = [str(p) for s in skills for p in s.problems if p.severity == "error"]
    if errors:
        raise InvalidInput("nothing installed; fix these first:\n" + "\n".join(errors))
    report: dict[str, Any] = {"source": str(src)} | {
        k: [] for k in ("installed", "updated", "unchanged", "skipped")
    }
    changed: list[str] = []
    with store.locked():
        for skill in skills:
            dest = store.root / "skills" / skill.name
            if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
                report["skipped"].append(skill.name)
                continue
            if dest.exists():
                if _tree(skill.folder) == _tree(dest):
                    report["unchanged"].append(skill.name)
                    continue
                if not force:
                    report["skipped"].append(skill.name)
                    continue
                shutil.rmtree(dest)
                report["updated"].append(skill.name)
            else:
                report["installed"].append(skill.name)
            shutil.copytree(skill.folder, dest, ignore=_ignore)
            changed.append(f"skills/{skill.name}")
        message = f"install skills: {', '.join(report['installed'] + report['updated'])}"
        report["commit"] = history.commit(store.root, changed, message, author) if changed else None
    return report
