"""The SKILL.md format (Agent Skills standard): parsing and validation, each problem with file and line.

A skill is a folder `<name>/SKILL.md` (+ scripts/, references/, assets/): YAML front matter with `name`
(= the folder name: lowercase letters, digits, single hyphens, at most 64), `description` (at most 1,024
characters), optional `license`, `compatibility` (at most 500), `metadata` (a mapping), `allowed-tools`;
then the instructions. Pure: reads files, writes nothing, knows no catalog.

Errors (no or broken front matter, bad name, name and folder differ, no description, over-long fields,
too big, binary, a link to a missing file or out of the folder) make a skill invalid: listed with its
problems, never served. Warnings (a key outside the standard and Claude Code's extensions, no `name`,
a body over 500 lines, non-text metadata values) leave it served. Both are reported by `somna skills check`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import yaml

from somna import notes
from somna.errors import NotFound

NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NAME, MAX_DESCRIPTION, MAX_COMPATIBILITY = 64, 1024, 500
MAX_SKILL_MD = 256_000  # bytes: a SKILL.md is read whole into the agent's context at level 2
MAX_LINES = 500  # the standard's advice for a SKILL.md body
STANDARD_KEYS = {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}
# Claude Code's extensions to the front matter: skills written for it are served as they are.
HARNESS_KEYS = {
    "model",
    "disable-model-invocation",
    "user-invocable",
    "argument-hint",
    "when_to_use",
    "context",
    "agent",
    "hooks",
    "version",
}
_FM_RE = re.compile(r"^---[ \t]*\r?\n(.*?\r?\n)?---[ \t]*(?:\r?\n|$)", re.S)
_LINK_RE = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when there: 1,000 skills scan in ~0.1 s
NAME_RULE = f"lowercase letters, digits, single hyphens not at either end, at most {MAX_NAME} characters"


@dataclass(frozen=True)
class Root:
    """A folder of skill folders: a store's skills/ (scope = the store's scope) or a read-only mount."""

    path: Path
    scope: str  # project, user, store, or mount
    writable: bool


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


@dataclass
class Skill:
    name: str  # the folder's name
    folder: Path
    root: Root
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    body: str = ""
    body_line: int = 1
    version: str = ""
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "scope": self.root.scope}
        if not self.valid:
            out |= {"invalid": True, "problems": [str(p) for p in self.problems]}
        return out


Parsed = tuple[dict[str, Any], str, int, list[Problem]]


def check_text(text: str, name: str, folder: Path, display: str) -> Parsed:
    """Parse and validate a SKILL.md text: (front matter, body, line where the body starts, problems)."""
    problems: list[Problem] = []

    def add(line: int, message: str, severity: str = "error") -> None:
        problems.append(Problem(display, line, message, severity))

    if not NAME_RE.match(name) or len(name) > MAX_NAME:
        add(1, f"folder name {name[:80]!r} is not a valid skill name: {NAME_RULE}")
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        add(line, "contains NUL bytes: SKILL.md must be text (binary file?)")
        return {}, "", 1, problems
    m = _FM_RE.match(text)
    if not text.startswith("---") or not m:
        add(
            1,
            "no front matter: SKILL.md must start with a '---' line, then `name:` and `description:`, "
            "then a closing '---' line"
            if not text.startswith("---")
            else "front matter starts with '---' but has no closing '---' line",
        )
        _check_body(text, 1, folder, add)
        return {}, text, 1, problems
    head, body = m.group(1) or "", text[m.end() :]
    body_line = text[: m.end()].count("\n") + 1
    lines = head.splitlines()

    def line_of(key: str) -> int:
        return next((i + 2 for i, ln in enumerate(lines) if re.match(rf"^{re.escape(key)}\s*:", ln)), 2)

    try:
        meta = yaml.load(head, Loader=_Loader) or {}
    except yaml.YAMLError as exc:
        mark, start = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
        line = mark.line + 2 if mark else 2
        if start is not None and (mark is None or mark.line >= len(lines)):
            line = start.line + 2  # the error is at the end of the front matter: point at what was left open
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "mapping values are not allowed" in what:
            what += " (quote a value that contains ': ')"
        context = getattr(exc, "context", None)
        add(
            line,
            f"front matter is not valid YAML: {what}"
            + (f" ({context} that starts on line {start.line + 2})" if context and start else ""),
        )
        meta = None
    if meta is not None and not isinstance(meta, dict):
        add(2, "front matter must be a YAML mapping (`key: value` lines)")
        meta = None
    _check_body(body, body_line, folder, add)
    if meta is None:
        return {}, body, body_line, problems
    meta = {str(k): v for k, v in meta.items()}
    declared = meta.get("name")
    if declared is None:
        add(1, f"no `name:` in the front matter; using the folder name {name!r}", "warning")
    elif not isinstance(declared, str) or not NAME_RE.match(declared) or len(declared) > MAX_NAME:
        add(line_of("name"), f"name {str(declared)[:80]!r} is not valid: {NAME_RULE}")
    elif declared != name:
        add(line_of("name"), f"name {declared!r} does not match its folder {name!r}: rename one of them")
    desc = meta.get("description")
    if not isinstance(desc, str) or not desc.strip():
        add(
            line_of("description") if "description" in meta else 1,
            "no `description:`: say what the skill does and when to use it (at most 1,024 characters)",
        )
    elif len(desc) > MAX_DESCRIPTION:
        add(line_of("description"), f"description is {len(desc):,} characters; the limit is 1,024")
    compat = meta.get("compatibility")
    if compat is not None and not (isinstance(compat, str) and 0 < len(compat.strip()) <= MAX_COMPATIBILITY):
        add(line_of("compatibility"), f"compatibility must be text of 1 to {MAX_COMPATIBILITY} characters")
    if "license" in meta and not isinstance(meta["license"], str):
        add(line_of("license"), "license must be text: a license name or a file in the skill")
    if "metadata" in meta:
        if not isinstance(meta["metadata"], dict):
            add(line_of("metadata"), "metadata must be a mapping of keys to text values")
        elif not all(isinstance(v, str) for v in meta["metadata"].values()):
            add(line_of("metadata"), "metadata values should be text (quote numbers and dates)", "warning")
    tools = meta.get("allowed-tools")
    if (
        tools is not None
        and not isinstance(tools, str)
        and not (isinstance(tools, list) and all(isinstance(t, str) for t in tools))
    ):
        add(line_of("allowed-tools"), "allowed-tools must be a space-separated list of tool names")
    for key in meta:
        if key not in STANDARD_KEYS | HARNESS_KEYS:
            add(
                line_of(key),
                f"unknown front-matter key {key!r}: not in the Agent Skills standard; ignored",
                "warning",
            )
    return meta, body, body_line, problems


def _check_body(body: str, body_line: int, folder: Path, add: Callable[..., None]) -> None:
    if not body.strip():
        add(body_line, "SKILL.md has no body: write the instructions after the front matter", "warning")
    elif body.count("\n") > MAX_LINES:
        add(
            body_line,
            f"the body is {body.count(chr(10)):,} lines; keep SKILL.md under {MAX_LINES} lines "
            "and move detail into references/",
            "warning",
        )
    for n, ln in enumerate(body.splitlines()):
        for target in _LINK_RE.findall(ln):
            path = unquote(target.split("#")[0].split("?")[0])
            if not path or "://" in target or target.startswith(("#", "mailto:")):
                continue
            if path.startswith(("/", "\\")) or ".." in PurePosixPath(path).parts or re.match(r"^\w:", path):
                add(body_line + n, f"link {target!r} points outside the skill folder")
            elif not (folder / path).exists():
                add(body_line + n, f"broken reference: {target!r} does not exist in the skill folder")


def parse_skill(folder: Path, root: Root) -> Skill:
    """Read and validate one skill folder; problems are collected, never raised."""
    md = folder / "SKILL.md"
    display = str(md)
    skill = Skill(folder.name, folder, root)
    try:
        size = md.stat().st_size
        if not md.is_file():
            raise FileNotFoundError
    except OSError:
        skill.problems.append(Problem(display, 1, "no SKILL.md in the skill folder"))
        return skill
    if size > MAX_SKILL_MD:
        too_big = f"SKILL.md is {size:,} bytes; the limit is {MAX_SKILL_MD:,}: move details into references/"
        skill.problems.append(Problem(display, 1, too_big))
        return skill
    raw = md.read_bytes()
    skill.version = notes.version_of(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        skill.problems.append(Problem(display, line, "not UTF-8 text: SKILL.md must be Markdown (binary?)"))
        return skill
    meta, skill.body, skill.body_line, skill.problems = check_text(text, folder.name, folder, display)
    skill.meta = meta
    desc = meta.get("description")
    skill.description = " ".join(desc.split()) if isinstance(desc, str) else ""
    return skill


def skill_folders(root: Path) -> list[Path]:
    """The skill folders of a root, sorted: every visible sub-folder (one without SKILL.md is reported)."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    return [Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir()]


def check_paths(paths: Iterable[Path]) -> list[Skill]:
    """Every skill under these paths (a folder of skills, or one skill folder), validated."""
    out: list[Skill] = []
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise NotFound(f"{path} is not a folder")
        if (path / "SKILL.md").exists():
            out.append(parse_skill(path, Root(path.parent, "check", False)))
        else:
            out += [parse_skill(f, Root(path, "check", False)) for f in skill_folders(path)]
    return out
