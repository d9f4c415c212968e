"""The `somna` commands for people: the argument parser and `main`; each command is a function in the
module of its group (memory, store, sleep, harness), which calls the core and turns its errors into
messages. `somna serve` over stdio starts in `cli.py`, before any of this is imported."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from somna import __version__, capture, context, portable
from somna.cli import setup_logging
from somna.commands.common import EXIT_ERROR
from somna.commands.harness import cmd_capture, cmd_context, cmd_install, cmd_serve, cmd_skills
from somna.commands.memory import (
    cmd_add,
    cmd_log,
    cmd_proposals,
    cmd_reindex,
    cmd_revert,
    cmd_search,
    cmd_show,
)
from somna.commands.sleep import cmd_daemon, cmd_exam, cmd_sleep
from somna.commands.status import cmd_status
from somna.commands.store import cmd_doctor, cmd_export, cmd_import, cmd_init, cmd_model
from somna.commands.sync import cmd_sync
from somna.commands.ui import add_parser as add_ui_parser
from somna.config import Settings
from somna.errors import Conflict, SomnaError
from somna.install import HARNESSES, SCOPES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="somna", description="A memory that learns, for your coding agents.")
    p.add_argument("--version", action="version", version=f"somna {__version__}")
    p.add_argument("--store", help="use this store only (default: project store here + user store)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, fn: Any, help: str, *, scoped: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        if scoped:
            sp.add_argument("--json", action="store_true", help="machine-readable output")
            sp.add_argument("--scope", help="project or user (default: the project store if there is one)")
        return sp

    sp = cmd("init", cmd_init, "create a store (default: the user store, ~/.somna or $SOMNA_HOME)")
    sp.add_argument("path", nargs="?")
    sp.add_argument(
        "--project",
        action="store_true",
        help="the project's store, on its own branch of the project's repository (joins the team's if any)",
    )
    sp.add_argument("--remote", metavar="URL", help="share the store through this git remote (somna sync)")
    sp = cmd(
        "sync", cmd_sync, "commit, fetch, merge (losing no memory) and push the stores with their remotes"
    )
    sp.add_argument("--no-push", action="store_true", help="fetch and merge only")
    sp.add_argument("--remote", metavar="URL", help="set (or change on purpose) the URL the store syncs with")
    sp.add_argument(
        "--squash",
        action="store_true",
        help="replace this machine's unpushed commits by one (a secret removed from a file is then not sent)",
    )
    sp = cmd(
        "serve",
        cmd_serve,
        "run the MCP server over stdio (what harnesses launch), or --http for many clients",
    )
    sp.add_argument("--http", action="store_true", help="one shared server over streamable HTTP")
    sp.add_argument("--host", default="127.0.0.1", help="--http: address (not loopback: a token is required)")
    sp.add_argument("--port", type=int, default=8765, help="--http: port (default 8765)")
    sp.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="--http: a browser Origin to accept besides localhost (scheme://host[:port|:*])",
    )
    sp.add_argument(
        "--new-token",
        action="store_true",
        help="--http: create a bearer token file (0600) in the user store's .somna/, require it",
    )
    sp = cmd("add", cmd_add, "write a memory (content as argument, or - / nothing to read stdin)")
    sp.add_argument("content", nargs="?")
    sp.add_argument("--title")
    sp.add_argument("--type", default="note")
    sp.add_argument("--tag", action="append")
    sp.add_argument("--force", action="store_true", help="write even if a near-duplicate exists")
    sp = cmd("search", cmd_search, "search memories")
    sp.add_argument("query", nargs="+")
    sp.add_argument("--limit", type=int, default=8)
    sp.add_argument("--type")
    sp.add_argument("--tag", action="append")
    sp.add_argument("--archived", action="store_true", help="include archived memories")
    sp.add_argument("--words", action="store_true", help="words only: do not load the embedding model")
    sp = cmd("show", cmd_show, "print a memory or block (block:NAME)")
    sp.add_argument("id")
    sp = cmd("log", cmd_log, "the history of a memory or block")
    sp.add_argument("id")
    sp.add_argument("--limit", type=int, default=20)
    sp.add_argument("--diff", action="store_true", help="show the diff of the last change")
    sp = cmd("revert", cmd_revert, "restore a memory or block to an earlier version (a new commit)")
    sp.add_argument("id")
    sp.add_argument("to", nargs="?", help="commit or version (default: the previous version)")
    sp = cmd(
        "proposals", cmd_proposals, "list, accept or reject proposed changes: edits, skills, sleep-time's"
    )
    sp.add_argument("action", nargs="?", default="list", choices=["list", "accept", "reject"])
    sp.add_argument("id", nargs="?")
    sp.add_argument("--reason")
    sp.add_argument("-v", "--verbose", action="store_true", help="show each proposal's diff")
    sp.add_argument(
        "--force", action="store_true", help="accept even what the exam says would lose an answer"
    )
    sp = cmd("reindex", cmd_reindex, "bring the index in line with the files (--full: rebuild from scratch)")
    sp.add_argument("--full", action="store_true")
    sp.add_argument("--words", action="store_true", help="do not load the embedding model")
    sp = cmd("skills", cmd_skills, "skills: check (exit 1 on any problem), list, install somna's own")
    sp.add_argument("action", choices=["check", "list", "install"])
    sp.add_argument("paths", nargs="*", help="check: skill folders or folders of them (default: the catalog)")
    sp.add_argument("--from", dest="source", help="install: a folder of skills (default: somna's own)")
    sp.add_argument("--force", action="store_true", help="install: replace skills that differ")
    for name, verb in (("install", "register somna in"), ("uninstall", "remove somna from")):
        sp = cmd(
            name,
            cmd_install,
            f"{verb} a harness's MCP configuration (merged, backed up, reversible)",
            scoped=False,
        )
        sp.add_argument("harness", choices=HARNESSES)
        sp.add_argument(
            "--scope",
            choices=SCOPES,
            default="user",
            help="user: every project; project: this repository's config file",
        )
        sp.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
        sp.add_argument(
            "--no-hooks",
            action="store_true",
            help="claude-code: leave its hooks alone (else SessionEnd, PreCompact: capture)",
        )
    sp = cmd(
        "capture",
        cmd_capture,
        "put a session transcript into the store's inbox, secrets redacted "
        "(a harness hook: reads the hook's JSON on stdin)",
    )
    sp.add_argument("--harness", default="claude-code", choices=capture.HARNESSES)
    sp.add_argument("--transcript", help="capture this JSONL transcript (instead of a hook's input on stdin)")
    sp.add_argument("--session-id", help="the session's id (default: the hook's, or the file name)")
    sp = cmd(
        "context",
        cmd_context,
        "print the memory guidance, core blocks and skills catalog (Claude Code's "
        "SessionStart hook adds it to the session)",
    )
    sp.add_argument("--budget", type=int, default=context.CONTEXT_BUDGET, help="tokens (default %(default)s)")
    sp = cmd(
        "export",
        cmd_export,
        "learned context as CLAUDE.md / AGENTS.md / a Cursor rule, or the whole store (--bundle)",
    )
    sp.add_argument("--format", choices=portable.FORMATS)
    sp.add_argument(
        "--budget",
        type=int,
        default=portable.DEFAULT_BUDGET,
        metavar="CHARS",
        help=f"size limit of the file in characters (default {portable.DEFAULT_BUDGET:,})",
    )
    sp.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    sp.add_argument("--bundle", metavar="FILE", help="write the whole store with its history (a git bundle)")
    sp = cmd(
        "import", cmd_import, "restore a store from `somna export --bundle` (default: as the user store)"
    )
    sp.add_argument("file")
    sp.add_argument("path", nargs="?", help="where the new store goes (must not exist, or be empty)")
    sp = cmd(
        "sleep", cmd_sleep, "run one consolidation cycle now and print its report (see also: somna daemon)"
    )
    sp.add_argument("--once", action="store_true", help="one cycle in the foreground (the default)")
    sp.add_argument("--dry-run", action="store_true", help="plan and report; change nothing")
    sp.add_argument("--report", action="store_true", help="show the last cycle's report")
    sp.add_argument("--words", action="store_true", help="do not load the embedding model")
    sp.add_argument(
        "--no-gate", action="store_true", help="apply the plan without trying it against the exam"
    )
    sp = cmd("exam", cmd_exam, "ask what memory must still answer: the score and the failing probes (exit 1)")
    sp.add_argument("--add", metavar="QUERY", help="add a probe of your own to exams/probes.yaml")
    sp.add_argument("--expect", metavar="TEXT", help="with --add: what the answer must hold")
    sp.add_argument("--all", action="store_true", help="ask every derived probe, not a sample of 2,000")
    sp.add_argument("--words", action="store_true", help="do not load the embedding model")
    sp = cmd(
        "daemon", cmd_daemon, "watch the store: index hand edits, consolidate on new experience and when idle"
    )
    sp.add_argument("--idle", type=float, default=600.0, help="seconds of quiet before a cycle (default 600)")
    sp.add_argument(
        "--watch",
        action="append",
        metavar="DIR",
        help="also capture harness transcripts (*.jsonl) that change under DIR (repeatable; "
        "or [daemon] watch in somna.toml)",
    )
    sp.add_argument(
        "--background",
        action="store_true",
        help="as `somna serve` starts it: log to the file only, leave SOMNA_DAEMON_LINGER seconds "
        "after the last server",
    )
    sp.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)  # the lock its starter took for it
    sp = cmd(
        "model",
        cmd_model,
        "load the embedding model and say how it runs (the first time, this prepares its fast ONNX form)",
    )
    cmd(
        "status",
        cmd_status,
        "what runs in the background for each store and what it did; exit 1 when something needs "
        "fixing, 3 when proposals wait for review",
    )
    sp = cmd("doctor", cmd_doctor, "check that files, git and index agree; --repair fixes what it can")
    sp.add_argument("--repair", action="store_true")
    add_ui_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(Settings.from_env())
    try:
        return int(args.fn(args))
    except Conflict as exc:
        print(f"somna: conflict: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except SomnaError as exc:
        print(f"somna: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
