"""The transcripts in a store's inbox/ that the extract pass reads: which files, their text (chat JSONL
rendered as `role: text` lines, likely secrets redacted) and the pieces of it that fit one call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from somna import redaction

SUFFIXES = (".jsonl", ".json", ".md", ".markdown", ".txt", ".log")
MAX_READ = 4_000_000  # bytes: of a larger transcript only the end is read
CHUNK = 24_000  # characters of transcript per call (~6k tokens)


def inbox_files(root: Path) -> list[Path]:
    inbox = root / "inbox"
    if not inbox.is_dir():
        return []
    return sorted(
        p
        for p in inbox.iterdir()
        if p.is_file() and not p.name.startswith(".") and (p.suffix.lower() in SUFFIXES or not p.suffix)
    )


def read_transcript(path: Path) -> str:
    """The text of a transcript: Claude Code / chat JSONL rendered as `role: text` lines, anything else as is.
    Likely secrets are redacted before the text goes to a model."""
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - MAX_READ))
        raw = fh.read()
    text = raw.decode("utf-8", errors="replace")
    rendered = _render_jsonl(text) if path.suffix.lower() in (".jsonl", ".json") else None
    return redaction.redact(rendered if rendered is not None else text)[0]


def _render_jsonl(text: str) -> str | None:
    out: list[str] = []
    parsed = 0
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        parsed += 1
        if obj.get("type") == "summary" and isinstance(obj.get("summary"), str):
            out.append(f"[summary] {obj['summary']}")
            continue
        msg = obj["message"] if isinstance(obj.get("message"), dict) else obj
        role = msg.get("role") or obj.get("type")
        if role in ("user", "assistant", "system", "tool"):
            out += [f"{role}: {p}" for p in _pieces(msg.get("content")) if p.strip()]
    return "\n".join(out) if parsed else None


def _pieces(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            out.append(str(block.get("text", "")))
        elif kind == "tool_use":
            out.append(
                f"[tool {block.get('name')}] {json.dumps(block.get('input'), ensure_ascii=False)[:400]}"
            )
        elif kind == "tool_result":
            inner = block.get("content")
            text = inner if isinstance(inner, str) else " ".join(_pieces(inner))
            out.append(f"[result{' ERROR' if block.get('is_error') else ''}] {text[:600]}")
    return out


def chunks(text: str, size: int = CHUNK) -> list[str]:
    out: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > size:  # one enormous line
            if current:
                out.append(current)
                current = ""
            out.append(line[:size])
            line = line[size:]
        if len(current) + len(line) > size:
            out.append(current)
            current = ""
        current += line
    if current.strip():
        out.append(current)
    return [c for c in out if c.strip()]
