"""`somna capture`: a harness's session transcript into the store's inbox, secrets redacted.

Claude Code runs it as a hook (SessionEnd, PreCompact) with the hook input as JSON on stdin:
``{"session_id", "transcript_path", "cwd", "hook_event_name", ...}``. The transcript is JSON Lines; each
line is parsed and every string in it goes through `somna.redaction.redact` (a line that is not JSON is
redacted as text and kept), and the result lands in ``inbox/`` as a new file written atomically, where
sleep-time finds it. The file starts with one header record::

    {"somna_capture": {"harness": ..., "session_id": ..., "event": ..., "lines": [first, last],
                       "redacted": {"github_token": 1, ...}, "cut": {...} | null, ...}}

Captures are incremental: PreCompact and then SessionEnd of one session (or Codex's Stop after every turn)
each take only the lines added since the last capture of that session (`.somna/captures.json`).

Limits: a string longer than MAX_STRING characters (a whole file in a tool result) keeps its start; a
capture over MAX_BYTES keeps the first quarter and the last three quarters of it, with a
``{"somna_cut": ...}`` record where lines were left out. The header says what was cut.

A hook must never break the harness: `run` prints every problem to stderr and returns 0, and stdin is read
with a deadline (some harnesses never close it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import select
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from somna.config import Settings
from somna.errors import SomnaError
from somna.locks import file_lock
from somna.notes import atomic_write
from somna.redaction import redact
from somna.store import Store

MAX_BYTES = 20_000_000
MAX_STRING = 100_000
MAX_INPUT = 1_000_000
STDIN_WAIT = 3.0
STATE_FILE = "captures.json"
STATE_KEEP = 500
HEAD_SHARE = 0.25
HARNESSES = ("claude-code", "codex", "cursor", "other")
_SECRETISH_KEY = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)


class CaptureError(SomnaError):
    """The hook input or the transcript cannot be captured."""


@dataclass
class Captured:
    """What one capture wrote (or why it wrote nothing)."""

    path: Path | None
    lines: int = 0
    first_line: int = 0
    redacted: Counter[str] = field(default_factory=Counter)
    not_json: int = 0
    cut: dict[str, Any] | None = None
    strings_cut: int = 0

    def summary(self) -> str:
        if self.path is None:
            return "nothing new in the transcript since the last capture"
        parts = [f"captured lines {self.first_line}-{self.first_line + self.lines - 1} into {self.path}"]
        if self.redacted:
            parts.append("redacted " + ", ".join(f"{n} {kind}" for kind, n in sorted(self.redacted.items())))
        if self.not_json:
            parts.append(f"{self.not_json} lines were not JSON (redacted as text)")
        if self.strings_cut:
            parts.append(f"{self.strings_cut} strings over {MAX_STRING:,} characters cut")
        if self.cut:
            parts.append(
                f"left out {self.cut['lines']} lines ({self.cut['bytes']:,} bytes): {self.cut['why']}"
            )
        return "; ".join(parts)


# --- redaction of one transcript line ------------------------------------------------------------------


def _clip(text: str, stats: dict[str, int]) -> str:
    if len(text) <= MAX_STRING:
        return text
    stats["strings_cut"] += 1
    return text[:MAX_STRING] + f" [… {len(text) - MAX_STRING:,} characters cut by somna capture]"


def _redact_text(text: str, found: Counter[str]) -> str:
    clean, findings = redact(text)
    found.update(f.kind for f in findings)
    return clean


def _redact_named(key: str, value: str, found: Counter[str]) -> str:
    """A value whose key names a secret ({"password": "hunter2"}): redacted with its name as context."""
    clean, findings = redact(json.dumps({key: value}, ensure_ascii=False))
    try:
        back = json.loads(clean)
    except ValueError:
        back = None
    if isinstance(back, dict) and list(back) == [key] and isinstance(back[key], str):
        found.update(f.kind for f in findings)
        return back[key]
    return _redact_text(value, found)


def redact_value(value: Any, found: Counter[str], stats: dict[str, int]) -> Any:
    """Every string in a parsed JSON value, redacted (and clipped); keys are kept."""
    if isinstance(value, str):
        return _redact_text(_clip(value, stats), found)
    if isinstance(value, list):
        return [redact_value(v, found, stats) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(v, str) and _SECRETISH_KEY.search(k):
                out[k] = _redact_named(k, _clip(v, stats), found)
            else:
                out[k] = redact_value(v, found, stats)
        return out
    return value


def redact_line(raw: bytes, found: Counter[str], stats: dict[str, int]) -> str:
    """One JSONL line, redacted: parsed when it is JSON, as text when not. No newline at the end."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    try:
        value = json.loads(text)
    except ValueError:
        stats["not_json"] += 1
        return _redact_text(_clip(text, stats), found).replace("\n", "\\n")
    return json.dumps(redact_value(value, found, stats), ensure_ascii=False)


# --- reading the transcript ------------------------------------------------------------------------------


def _line_spans(f: BinaryIO, start: int, end: int, *, take_partial: bool) -> list[tuple[int, int]]:
    """(offset, length) of each line between start and end, newline included. A last line without a newline
    counts only when take_partial: the session is over; otherwise the harness may still be writing it."""
    spans: list[tuple[int, int]] = []
    f.seek(start)
    pos = start
    while pos < end:
        line = f.readline()
        if not line:
            break
        n = min(len(line), end - pos)  # the file may have grown since its size was taken
        if not line[:n].endswith(b"\n") and not take_partial:
            break
        spans.append((pos, n))
        pos += n
    return spans


def _choose(
    spans: list[tuple[int, int]], max_bytes: int
) -> tuple[list[int], list[int], dict[str, Any] | None]:
    """Indexes of the lines to keep at the head and at the tail, and what is cut between them."""
    total = sum(n for _, n in spans)
    if total <= max_bytes:
        return list(range(len(spans))), [], None
    head: list[int] = []
    used = 0
    for i, (_, n) in enumerate(spans):
        if used + n > max_bytes * HEAD_SHARE:
            break
        head.append(i)
        used += n
    tail: list[int] = []
    room = max_bytes - used
    for i in range(len(spans) - 1, len(head) - 1, -1):
        n = spans[i][1]
        if n > room:
            break
        tail.append(i)
        room -= n
    tail.reverse()
    kept = set(head) | set(tail)
    cut_lines = [i for i in range(len(spans)) if i not in kept]
    cut = {
        "lines": len(cut_lines),
        "bytes": sum(spans[i][1] for i in cut_lines),
        "why": f"the capture is capped at {max_bytes:,} bytes; the first quarter and the last three quarters "
        "were kept",
        "after_line": len(head),
    }
    return head, tail, cut


# --- state: how far each session has been captured -------------------------------------------------------


def _load_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- the capture -----------------------------------------------------------------------------------------


def _slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:n] or "session"


def capture(
    root: Path,
    transcript: Path,
    *,
    harness: str = "claude-code",
    session_id: str = "",
    event: str = "",
    cwd: str = "",
    max_bytes: int = MAX_BYTES,
    final: bool = True,
) -> Captured:
    """Copy what is new in `transcript` into `root`/inbox/, redacted; `final`: the session has ended."""
    if not transcript.is_file():
        raise CaptureError(f"no transcript at {transcript}")
    somna_dir = root / ".somna"
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    session = session_id or transcript.stem
    key = f"{harness}:{session}"
    with file_lock(somna_dir / "capture.lock", 5.0, poll=0.02) as locked:  # False: not had in time
        state_path = somna_dir / STATE_FILE
        state = _load_state(state_path) if locked else {}
        seen = state.get(key) or {}
        with open(transcript, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            start, first = 0, 1
            if seen.get("transcript") == str(transcript) and 0 < int(seen.get("offset", 0)) <= end:
                start, first = int(seen["offset"]), int(seen.get("lines", 0)) + 1
            spans = _line_spans(f, start, end, take_partial=final)
            if not spans:
                return Captured(None)
            head, tail, cut = _choose(spans, max_bytes)
            found: Counter[str] = Counter()
            stats = {"not_json": 0, "strings_cut": 0}
            body: list[str] = []
            for part, index in (("head", head), ("tail", tail)):
                if part == "tail" and cut:
                    body.append(
                        json.dumps({"somna_cut": {k: v for k, v in cut.items() if k != "after_line"}})
                    )
                for i in index:
                    offset, length = spans[i]
                    f.seek(offset)
                    body.append(redact_line(f.read(length), found, stats))
        last = first + len(spans) - 1
        header: dict[str, dict[str, Any]] = {
            "somna_capture": {
                "harness": harness,
                "session_id": session,
                "event": event or None,
                "cwd": cwd or None,
                "transcript": str(transcript),
                "captured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "lines": [first, last],
                "redacted": dict(sorted(found.items())),
                "not_json_lines": stats["not_json"],
                "strings_cut": stats["strings_cut"],
                "cut": None if cut is None else {**cut, "after_line": first + cut["after_line"] - 1},
            }
        }
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"  # names sort by time
        name = f"{stamp}-{_slug(harness, 20)}-{_slug(session)}"
        target = inbox / f"{name}.jsonl"
        n = 1
        while target.exists():
            n += 1
            target = inbox / f"{name}-{n}.jsonl"
        atomic_write(target, "\n".join([json.dumps(header, ensure_ascii=False), *body]) + "\n")
        if locked:
            last_offset = spans[-1][0] + spans[-1][1]
            state[key] = {
                "transcript": str(transcript),
                "offset": last_offset,
                "lines": last,
                "updated": header["somna_capture"]["captured_at"],
            }
            if len(state) > STATE_KEEP:
                for old in sorted(state, key=lambda k: str(state[k].get("updated", "")))[
                    : len(state) - STATE_KEEP
                ]:
                    del state[old]
            atomic_write(state_path, json.dumps(state, indent=1))
    return Captured(
        target,
        len(spans),
        first,
        found,
        stats["not_json"],
        header["somna_capture"]["cut"],
        stats["strings_cut"],
    )


# --- the command -----------------------------------------------------------------------------------------


def read_hook_input(fd: int = 0, wait: float = STDIN_WAIT) -> dict[str, Any]:
    """The hook's JSON object from stdin: read until it parses, EOF, or `wait` seconds have passed."""
    buf = b""
    deadline = time.monotonic() + wait
    waited = ""
    while len(buf) <= MAX_INPUT:
        left = deadline - time.monotonic()
        ready = select.select([fd], [], [], left)[0] if left > 0 else []
        if not ready:
            waited = f" after {wait:g} s"
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        if buf.rstrip().endswith(b"}"):
            try:
                value = json.loads(buf)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    if not buf.strip():
        raise CaptureError(f"no hook input on stdin{waited}; pass --transcript PATH to capture by hand")
    try:
        value = json.loads(buf[:MAX_INPUT])
    except ValueError:
        raise CaptureError(f"the hook input is not JSON: {buf[:80]!r}") from None
    if not isinstance(value, dict):
        raise CaptureError("the hook input is not a JSON object")
    return value


def store_for(settings: Settings, cwd: str | None, scope: str | None) -> Path:
    """Where the capture goes: --store, else the project store of the session's folder, else the user's."""
    here = Path(cwd) if cwd and Path(cwd).is_dir() else settings.cwd
    paths = Settings(user_store=settings.user_store, store=settings.store, cwd=here).store_paths()
    if scope is not None:
        if scope not in paths:
            raise CaptureError(f"no {scope} store for {here}; stores: {', '.join(paths)}")
        return paths[scope]
    return next(iter(paths.values()))


def run(
    settings: Settings,
    *,
    harness: str = "claude-code",
    transcript: str | None = None,
    session_id: str | None = None,
    scope: str | None = None,
    stdin_fd: int = 0,
) -> int:
    """The `somna capture` command. As a hook (no --transcript) it always exits 0."""
    hook = transcript is None
    try:
        payload: dict[str, Any] = {}
        if hook:
            if os.isatty(stdin_fd):
                raise CaptureError(
                    "somna capture reads a hook's JSON on stdin; by hand, pass --transcript PATH"
                )
            payload = read_hook_input(stdin_fd)
            transcript = payload.get("transcript_path")
            if not isinstance(transcript, str) or not transcript:
                raise CaptureError(
                    f"the hook input has no transcript_path (keys: {', '.join(sorted(payload))})"
                )
        assert transcript is not None
        event = str(payload.get("hook_event_name") or ("manual" if not hook else ""))
        cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else None
        root = store_for(settings, cwd, scope)
        if not (root / ".git").exists():
            Store.init(root).close()
        sid = session_id or str(payload.get("session_id") or payload.get("conversation_id") or "")  # Cursor
        out = capture(
            root,
            Path(transcript).expanduser(),
            harness=harness,
            session_id=sid,
            event=event,
            cwd=cwd or "",
            final=event not in ("PreCompact", "Stop"),
        )
        print(f"somna capture: {out.summary()}", file=sys.stderr)
        return 0
    except Exception as exc:  # a hook must not break the harness: say what went wrong, exit 0
        print(f"somna capture: nothing captured: {exc}", file=sys.stderr)
        return 0 if hook else 1
