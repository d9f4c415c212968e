"""`somna status`: what runs in the background for each store, what it did, and what needs a person.

Read-only and light (no index, no model): the daemon's files in `.somna/daemon/`, the cycle reports in
`.somna/sleep/reports/`, the inbox and the review queue. Exit codes: 0 when all is well, 1 when something
is broken and needs a person (a daemon that keeps crashing, a cycle that could not be undone, a store
gone or read-only), 3 when all runs but proposals wait for a person's review.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from somna import background
from somna.commands.common import EXIT_ERROR, EXIT_OK, print_json
from somna.config import Settings
from somna.errors import InvalidInput, StoreNotFound
from somna.layout import Layout
from somna.proposals import Queue
from somna.sleep.llm_client import LLMConfig
from somna.sleep.transcripts import inbox_files

EXIT_REVIEW = 3


def last_reports(layout: Layout) -> list[dict[str, Any]]:
    """The cycle reports, oldest first (their names are their start times)."""
    folder = layout.sleep_dir / "reports"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def daemon_status(layout: Layout) -> dict[str, Any]:
    state = background.read_state(layout)
    try:
        running = background.running(layout)
    except OSError as exc:
        return {"running": False, "error": f"cannot read its lock: {exc.strerror}", **state}
    recent = background.recent_crashes(layout)
    out: dict[str, Any] = {"running": running, **state}
    if running:
        for key in ("ended", "why", "ok"):
            out.pop(key, None)
    elif state.get("pid") and not state.get("ended"):  # gone, and no server has noticed yet
        out |= {"ok": False, "why": f"ended without a word (killed, or crashed): see {layout.daemon_log}"}
    out["crashes_last_hour"] = len(recent)
    out["given_up"] = not running and len(recent) >= background.CRASH_LIMIT
    if recent:
        out["last_crash"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(recent[-1][0])),
                             "what": recent[-1][1]}  # fmt: skip
    return out


def store_status(path: Path, scope: str) -> dict[str, Any]:
    out: dict[str, Any] = {"store": str(path), "scope": scope, "problems": []}
    try:
        layout = Layout(path)
    except StoreNotFound as exc:
        out["problems"].append(str(exc))
        return out
    out["store"] = str(layout.root)
    if not os.access(layout.somna if layout.somna.exists() else layout.root, os.W_OK):
        out["problems"].append("the store is read-only: somna can neither index, commit nor sleep here")
    daemon = out["daemon"] = daemon_status(layout)
    if daemon.get("error"):
        out["problems"].append(f"the daemon: {daemon['error']}")
    if daemon["given_up"]:
        out["problems"].append(
            f"the daemon crashed {daemon['crashes_last_hour']} times within the hour and is not started "
            f"again; its log: {layout.daemon_log} (and logs/daemon.stderr). Run `somna daemon` by hand to "
            "see the error; servers try again once the crashes are an hour old (or once "
            f"{layout.daemon_dir / 'crashes'} is removed)"
        )
    reports = last_reports(layout)
    if reports:
        last = reports[-1]
        counts: dict[str, int] = {}
        for a in last.get("applied") or []:
            counts[a.get("kind", "?")] = counts.get(a.get("kind", "?"), 0) + 1
        out["last_sleep"] = {
            "started": last.get("started"),
            "seconds": round(float(last.get("seconds") or 0), 1),
            "applied": counts,
            "queued": len(last.get("queued") or []),
            "dropped": len(last.get("dropped") or []),
            "notes": (last.get("notes") or [])[:5],
        }
    today = time.strftime("%Y-%m-%d", time.gmtime())
    spent = [r for r in reports if str(r.get("started", "")).startswith(today)]
    out["llm_today"] = {
        "tokens": sum(int(r.get("tokens") or 0) for r in spent),
        "cost": round(sum(float(r.get("cost") or 0) for r in spent), 4),
        "cycles": len(spent),
    }
    out["inbox"] = len(inbox_files(layout.root))
    if out["inbox"]:
        try:
            out["llm"] = LLMConfig.load(layout.root) is not None
        except InvalidInput as exc:
            out["llm"] = False
            out["problems"].append(f"the [llm] settings: {exc}")
    out["review"] = len(Queue(layout, nullcontext, lambda *_: None).paths())
    failed = layout.somna / "intent-failed.json"
    if failed.exists():
        out["problems"].append(
            f"an interrupted sleep cycle could not be undone cleanly ({failed}): see `git log` of the store "
            "for its commits by somna-sleep; remove the file once settled"
        )
    undone = layout.somna / "intent-undone.json"
    try:
        out["last_undo"] = json.loads(undone.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if daemon.get("last_failure"):
        out["last_failure"] = daemon["last_failure"]
    return out


def human_lines(s: dict[str, Any], on: bool) -> list[str]:
    lines = [f"store {s['store']} ({s['scope']})"]
    d = s.get("daemon")
    if d is not None:
        if d["running"]:
            lines.append(f"  daemon: running, pid {d.get('pid')}, since {d.get('since')}")
        elif d.get("given_up"):
            lines.append("  daemon: NOT RUNNING, and not started again (it keeps crashing)")
        else:
            when = f" {d['ended']}" if d.get("ended") else ""
            last = f" (last stopped{when}: {d.get('why')})" if d.get("why") else ""
            when = "a session starts" if on else "you run `somna daemon` (SOMNA_DAEMON=off)"
            lines.append(f"  daemon: not running{last}; it starts when {when}")
    if d is not None and (c := d.get("last_crash")):
        lines.append(f"  crashes in the last hour: {d['crashes_last_hour']}, the last {c['at']}: {c['what']}")
    if sl := s.get("last_sleep"):
        did = ", ".join(f"{k} {v}" for k, v in sorted(sl["applied"].items())) or "nothing applied"
        lines.append(
            f"  last sleep: {sl['started']} ({sl['seconds']} s): {did}; {sl['queued']} queued, "
            f"{sl['dropped']} dropped"
        )
    elif d is not None:
        lines.append("  last sleep: never")
    if u := s.get("last_undo"):
        lines.append(
            f"  last interrupted {u.get('name') or 'operation'}: undone at {u.get('at')} ({u.get('reverted')} "
            f"commit(s) reverted, {u.get('restored')} file(s) restored); the next cycle plans it again"
        )
    if "inbox" in s:
        why = " (read only with a model: no [llm] in somna.toml)" if s["inbox"] and not s.get("llm") else ""
        lines.append(
            f"  inbox: {s['inbox']} transcript(s) waiting{why}; review queue: {s['review']} proposal(s)"
            + (" — `somna proposals`" if s["review"] else "")
        )
        llm = s["llm_today"]
        lines.append(f"  LLM today: {llm['tokens']} tokens, ${llm['cost']:.4f} in {llm['cycles']} cycle(s)")
    if f := s.get("last_failure"):
        lines.append(f"  last failure: {f.get('at')}: {f.get('what')}")
    lines += [f"  PROBLEM: {p}" for p in s["problems"]]
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    settings = Settings.from_env(store=args.store)
    paths = {k: v for k, v in settings.store_paths().items() if not args.scope or k == args.scope}
    found = [store_status(path, scope) for scope, path in paths.items()]
    broken = any(s["problems"] for s in found)
    review = any(s.get("review") for s in found)
    if args.json:
        print_json({"daemon_enabled": settings.daemon, "stores": found, "ok": not broken})
    else:
        if not settings.daemon:
            print("background work is off (SOMNA_DAEMON=off): `somna daemon` runs it by hand")
        for s in found:
            print("\n".join(human_lines(s, settings.daemon)))
    if broken:
        return EXIT_ERROR
    return EXIT_REVIEW if review else EXIT_OK
