"""Learned context out of somna, and whole stores between machines.

- `render`: the core blocks and the most useful memories as one Markdown file for a harness (or teammate)
  without MCP: CLAUDE.md, AGENTS.md or a Cursor rule, within a size budget in characters. Memories rank by
  type (lessons, decisions and preferences first), then helpful minus harmful (counters in front matter
  plus feedback not folded yet), then recency; archived and superseded ones, and those found harmful more
  often than helpful, are not exported. What did not fit is counted, with how to reach it.
- `bundle` / `restore`: the store's git repository as one `git bundle` file (memories, blocks, skills,
  proposals, somna.toml and every commit), and a new store cloned from it and indexed. The inbox and
  `.somna/` (index, feedback not yet folded into front matter) stay behind: the index is rebuilt; fold
  feedback first with `somna sleep` to carry it.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from somna import history, notes
from somna.embeddings import Embedder
from somna.errors import InvalidInput, SomnaError
from somna.index import Row
from somna.notes import INACTIVE
from somna.store import Store

FORMATS = ("claude-md", "agents-md", "cursor-rules")
DEFAULT_BUDGET = 8_000
FIRST_TYPES = ("lesson", "decision", "preference")
MAX_ENTRY = 1_200
_TITLES = {"claude-md": "CLAUDE.md", "agents-md": "AGENTS.md", "cursor-rules": "Cursor rule"}


@dataclass(frozen=True)
class Exported:
    text: str
    shown: int
    left_out: int
    harmful: int
    total: int


@dataclass(frozen=True)
class _Item:
    scope: str
    row: Row
    net: int
    recent: str


def rank(stores: Sequence[Store]) -> tuple[list[_Item], int]:
    """Active memories of the stores, most useful first; and how many were dropped as harmful."""
    items: list[_Item] = []
    harmful = 0
    for store in stores:
        store.ensure_synced()
        rows = [r for r in store.index.all_rows("memory") if r.status not in INACTIVE]
        usage = store.index.usage([r.id for r in rows])
        for r in rows:
            helped, misled, last = usage.get(r.id, (0, 0, ""))
            net = r.helpful + helped - r.harmful - misled
            if net < 0:
                harmful += 1
                continue
            items.append(_Item(store.scope, r, net, max(r.updated or r.created, last or "")))
    items.sort(key=lambda i: i.recent, reverse=True)
    items.sort(key=lambda i: (i.row.type not in FIRST_TYPES, -i.net))  # stable: recency breaks ties
    return items, harmful


def _entry(item: _Item, scopes: bool) -> str:
    r = item.row
    body = r.body.strip()
    if len(body) > MAX_ENTRY:
        body = body[:MAX_ENTRY].rstrip() + f" … (the rest: `somna show {r.id}`)"
    where = f"{item.scope} · " if scopes else ""
    tags = f" · {', '.join(r.tags)}" if r.tags else ""
    text = "" if body == r.title.strip() else f"\n{body}\n"  # a title taken from the body's only line
    return f"\n### {r.title}\n_{where}{r.type} · `{r.id}`{tags}_\n{text}"


def _blocks(stores: Sequence[Store], room: int, scopes: bool) -> str:
    parts: list[str] = []
    for store in stores:
        for name in store.block_names():
            try:
                body = store.read(f"block:{name}")["content"].strip()
            except SomnaError:
                continue
            if not body:
                continue
            head = f"\n## {store.scope + ' ' if scopes else ''}{name}\n\n"
            text = head + body + "\n"
            if len(text) > room:
                note = f"\n[… cut to fit; `somna show block:{name}`]\n"
                keep = room - len(head) - len(note)
                if keep < 40:
                    break
                text = head + body[:keep].rstrip() + note
            parts.append(text)
            room -= len(text)
    return "".join(parts)


def render(
    stores: Sequence[Store], fmt: str, budget: int = DEFAULT_BUDGET, *, today: str | None = None
) -> Exported:
    """The export as text of at most `budget` characters."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    day = today or dt.date.today().isoformat()
    front = (
        (
            "---\ndescription: What earlier agent sessions learned about this user and project (from somna)\n"
            "globs:\nalwaysApply: true\n---\n"
        )
        if fmt == "cursor-rules"
        else ""
    )
    head = (
        f"{front}# What earlier sessions learned\n\n"
        f"<!-- Exported from somna by `somna export --format {fmt}` on {day}. Edits here do not flow back: "
        "change the memory in somna (its files, or the MCP tools) and export again. -->\n\n"
        "Core notes about the user and the project first, then the most useful memories (lessons, "
        "decisions, preferences first). Where somna is connected over MCP, `search` it for more.\n"
    )
    items, harmful = rank(stores)
    scopes = len(stores) > 1
    total = len(items) + harmful
    footer_max = _footer(10**9, 10**9, budget, fmt)
    floor = len(head) + len(footer_max)
    if budget < floor + 200:
        raise InvalidInput(f"a budget of {budget:,} characters is too small; use at least {floor + 200:,}")
    text = head + _blocks(stores, budget - floor - 200, scopes)
    memories: list[str] = []
    used = len(text) + len("\n## Memories\n")
    for item in items:
        entry = _entry(item, scopes)
        if used + len(entry) + len(footer_max) <= budget:
            memories.append(entry)
            used += len(entry)
    if memories:
        text += "\n## Memories\n" + "".join(memories)
    left = len(items) - len(memories)
    text += _footer(left, harmful, budget, fmt)
    assert len(text) <= budget, (len(text), budget)
    return Exported(text, len(memories), left, harmful, total)


def _footer(left: int, harmful: int, budget: int, fmt: str) -> str:
    if not left and not harmful:
        return ""
    parts = []
    if left:
        parts.append(
            f"{left:,} more memories did not fit in this {_TITLES[fmt]}'s budget of {budget:,} characters"
        )
    if harmful:
        parts.append(f"{harmful:,} marked harmful more often than helpful were left out")
    return (
        "\n---\n" + "; ".join(parts) + ". Reach them with somna's `search` tool over MCP, or "
        "`somna search <words>` and `somna show <id>`; a larger `--budget` exports more.\n"
    )


# --- whole stores -----------------------------------------------------------------------------------------


def bundle(store: Store, path: Path) -> dict[str, object]:
    """Write the store's repository, every branch and commit, to one bundle file."""
    store.sync()  # edits made by hand are committed first, so that they travel too
    if history.head(store.root) is None:
        raise InvalidInput(f"{store.root} has no commits to bundle")
    target = path.expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    history.git(store.root, "bundle", "create", "--quiet", str(target), "--all")
    history.git(store.root, "bundle", "verify", "--quiet", str(target))
    commits = int(history.git(store.root, "rev-list", "--all", "--count").strip() or 0)
    return {"path": str(target), "commits": commits, "bytes": target.stat().st_size, "store": str(store.root)}


def restore(source: Path, dest: Path, *, embedder: Embedder | None = None, scope: str = "user") -> Store:
    """A new store at `dest`, cloned from a bundle (history and all) and indexed."""
    source = source.expanduser().resolve()
    dest = dest.expanduser().absolute()
    if not source.is_file():
        raise InvalidInput(f"no bundle at {source}")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidInput(
            f"{dest} already exists and is not empty; import into a new folder (somna import FILE PATH)"
        )
    made = not dest.exists()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        history.git(dest.parent, "clone", "--quiet", str(source), str(dest))
        if not (dest / "memory").is_dir() or not (dest / "blocks").is_dir():
            raise InvalidInput(f"{source} is a git bundle but not of a somna store (no memory/ or blocks/)")
        if "origin" in history.git(dest, "remote").split():
            history.git(dest, "remote", "remove", "origin")  # the bundle file is no place to push to
    except SomnaError:
        if made and dest.exists():
            shutil.rmtree(dest)  # only what this import created
        elif dest.exists():
            for child in dest.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        raise
    return Store.init(dest, scope=scope, embedder=embedder)


def write_text(path: Path, text: str) -> None:
    notes.atomic_write(path, text)
