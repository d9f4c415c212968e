"""The `somna` commands for people: each calls the core and turns its errors into messages (`somna serve`
over stdio starts in `cli.py`, before any of this is imported)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from somna import __version__, capture, context, doctor, portable, progress, skill_store, skills
from somna.app import catalog_for, embedder_for, open_memory
from somna.cli import exit_now, serve_stdio, setup_logging
from somna.config import Settings
from somna.embeddings import Embedder, LazyEmbedder, make_embedder
from somna.errors import Conflict, SomnaError
from somna.install import HARNESSES, SCOPES, run_install
from somna.scopes import Memory
from somna.store import Store

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _embedder(settings: Settings, *, wait: bool = True) -> Embedder | None:
    """The embedding model the settings name, waited for with a spinner (or only started, unless `wait`)."""
    embedder = embedder_for(settings)
    if isinstance(embedder, LazyEmbedder):
        if not wait:
            embedder.start()
        else:
            with progress.spinner("loading the embedding model"):
                embedder.wait()
            if not embedder.ready:
                print(f"embedding model unavailable ({embedder.error}); using words only", file=sys.stderr)
    return embedder


def _open(args: argparse.Namespace, *, model: bool = False, wait: bool = True) -> Memory:
    """The stores, with the embedding model when `model` (waited for, unless `wait` is False)."""
    settings = Settings.from_env(store=args.store)
    return open_memory(settings, _embedder(settings, wait=wait) if model else None)


def cmd_init(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    path = Path(args.path) if args.path else (Path(args.store) if args.store else settings.user_store)
    existed = (path / ".git").exists() and (path / "memory").is_dir()
    store = Store.init(path)
    print(f"{'store already at' if existed else 'created store at'} {store.root}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env(store=args.store)
    if not args.http:
        serve_stdio(settings)  # `somna serve` alone does not come here: cli.main starts it before parsing
    from somna import transport  # deliberately lazy: uvicorn and the server, for this command only

    transport.serve(
        settings,
        host=args.host,
        port=args.port,
        extra_origins=args.allow_origin or [],
        new_token=args.new_token,
    )
    exit_now()


def cmd_add(args: argparse.Namespace) -> int:
    content = sys.stdin.read() if args.content in (None, "-") else args.content
    memory = _open(args)
    store = memory.store(args.scope)
    out = store.write(
        content, title=args.title, type=args.type, tags=args.tag, author="human", force=args.force
    )
    if args.json:
        _print_json(out)
    else:
        print(f"wrote {out['id']} ({out['path']} in the {store.scope} store)")
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    memory = _open(args, model=not args.words)
    out = memory.search(
        " ".join(args.query),
        scope=args.scope,
        limit=args.limit,
        type=args.type,
        tags=args.tag,
        include_archived=args.archived,
    )
    if args.json:
        _print_json(out)
        return EXIT_OK
    if out.get("note"):
        print(f"({out['note']})", file=sys.stderr)
    if not out["hits"]:
        print("no matches")
    for hit in out["hits"]:
        trust = "" if hit.get("trust", "human") == "human" else f"  ({hit['trust']}: {hit.get('source')})"
        flagged = "  [flagged: reads like instructions]" if hit.get("flags") else ""
        print(f"{hit['id']}  [{hit['scope']}/{hit['type']}]  {hit['title']}{trust}{flagged}")
        print(f"    {hit['snippet']}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    memory = _open(args)
    out = memory.locate(args.id, args.scope).read(args.id)
    if args.json:
        _print_json(out)
    else:
        print(
            f"# {out['title']}  ({out['id']}, version {out['version']}, {out['path']}; "
            f"by {out.get('source')}, trust {out.get('trust')})"
        )
        if out.get("warning"):
            print(f"# warning: {out['warning']}")
        print(out["content"], end="")
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    memory = _open(args)
    out = memory.locate(args.id, args.scope).history(args.id, limit=args.limit, diff=args.diff)
    if args.json:
        _print_json(out)
        return EXIT_OK
    for v in out["versions"]:
        print(f"{v['commit']}  {v['date']}  {v['author']:<16} {v['message']}  (version {v['version']})")
    if args.diff and out.get("diff"):
        print(out["diff"], end="")
    return EXIT_OK


def cmd_revert(args: argparse.Namespace) -> int:
    memory = _open(args)
    out = memory.locate(args.id, args.scope).revert(args.id, to=args.to, author="human")
    print(f"reverted {out['id']} to {out['to_commit']} (new version {out['version']})")
    return EXIT_OK


def cmd_proposals(args: argparse.Namespace) -> int:
    memory = _open(args)
    store = memory.store(args.scope)
    if args.action == "list":
        items = store.proposals()
        if args.json:
            _print_json(items)
        elif not items:
            print("no proposals waiting")
        for p in items:
            print(f"{p['id']}  {p.get('op')} {p.get('target')}  by {p.get('author')}  {p.get('created')}")
            if args.verbose:
                print(p.get("diff", ""))
        return EXIT_OK
    if not args.id:
        print(f"somna proposals {args.action} needs a proposal id", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "accept":
        out = store.accept(args.id, author="human")
        done = (
            f"{out['id']} is now version {out['version']}"
            if "version" in out
            else f"{out.get('kind')} applied"
        )
        print(f"accepted {args.id}: {done}")
    else:
        store.reject(args.id, author="human", reason=args.reason)
        print(f"rejected {args.id}")
    return EXIT_OK


def cmd_reindex(args: argparse.Namespace) -> int:
    memory = _open(args, model=not args.words)
    for store in memory.stores.values():
        if args.full:
            store.rebuild_index()
        report = progress.sync(store)
        print(
            f"{store.scope}: {store.root}: indexed {report['indexed']}, removed {report['removed']}, "
            f"problems {len(report['problems'])}"
            + (", committed edits made by hand" if report["committed"] else "")
        )
        for rel, problem in report["problems"]:
            print(f"  {rel}: {problem}")
    return EXIT_OK


def cmd_skills(args: argparse.Namespace) -> int:
    settings = Settings.from_env(store=args.store)
    if args.action == "check" and args.paths:
        found = skills.check_paths(Path(p) for p in args.paths)
    else:
        memory = _open(args)
        catalog = catalog_for(memory, settings)
        if args.action == "install":
            store = memory.store(args.scope)
            out = skill_store.install(
                store,
                Path(args.source) if args.source else None,
                force=args.force,
                author="human" if args.source else "somna",
            )
            if args.json:
                _print_json(out)
                return EXIT_OK
            for key in ("installed", "updated", "unchanged", "skipped"):
                if out[key]:
                    print(f"{key}: {', '.join(out[key])}")
            if out["skipped"]:
                print("(skipped: they differ from what is in the store; --force replaces them)")
            commit = f", commit {out['commit'][:12]}" if out["commit"] else ""
            print(f"into the {store.scope} store at {store.root}{commit}")
            return EXIT_OK
        if args.action == "list":
            out = catalog.search("", limit=100)
            while "next_offset" in out:  # the whole catalog, a page at a time
                page = catalog.search("", limit=100, offset=out.pop("next_offset"))
                out = page | {"skills": out["skills"] + page["skills"]}
            if args.json:
                _print_json(out)
                return EXIT_OK
            for s in out["skills"] + out.get("invalid", []):
                state = f"INVALID: {s['problems'][0]}" if s.get("invalid") else s["description"]
                print(f"{s['name']}  [{s['scope']}]  {state}")
            return EXIT_OK
        found = list(catalog.skills.values()) + catalog.invalid + catalog.shadowed
    problems = [p for s in found for p in s.problems]
    if args.json:
        _print_json(
            [
                {
                    "name": s.name,
                    "path": str(s.folder),
                    "valid": s.valid,
                    "problems": [vars(p) for p in s.problems],
                }
                for s in found
            ]
        )
    else:
        for p in problems:
            print(p)
        errors = sum(not s.valid for s in found)
        print(
            f"{len(found)} skills checked: {len(found) - errors} valid, {errors} invalid, "
            f"{len(problems)} problems"
        )
    return EXIT_ERROR if problems else EXIT_OK


def cmd_install(args: argparse.Namespace) -> int:
    return run_install(
        args.harness, args.scope, args.dry_run, args.command == "uninstall", hooks=not args.no_hooks
    )


def cmd_capture(args: argparse.Namespace) -> int:
    return capture.run(
        Settings.from_env(store=args.store),
        harness=args.harness,
        transcript=args.transcript,
        session_id=args.session_id,
        scope=args.scope,
    )


def cmd_context(args: argparse.Namespace) -> int:
    """A SessionStart hook: what somna tells an agent, on stdout, which the harness adds as context."""
    hook = not sys.stdin.isatty()
    cwd: str | None = None
    if hook:
        try:
            payload = capture.read_hook_input(0, wait=1.0)
            cwd = payload.get("cwd") if isinstance(payload.get("cwd"), str) else None
        except capture.CaptureError:
            pass  # run by hand with a pipe, or a harness that sends nothing: the current folder
    try:
        here = Path(cwd) if cwd and Path(cwd).is_dir() else None
        settings = Settings.from_env(store=args.store, cwd=here)
        print(context.session_context(settings, budget=args.budget), end="")
    except Exception as exc:  # a hook must not break the session: say what went wrong, exit 0
        print(f"somna context: nothing to add: {exc}", file=sys.stderr)
        return EXIT_OK if hook else EXIT_ERROR
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    memory = _open(args)
    if args.bundle:
        with progress.spinner("writing the bundle"):
            out = portable.bundle(memory.store(args.scope), Path(args.bundle))
        if args.json:
            _print_json(out)
        else:
            print(
                f"wrote {out['path']}: the store {out['store']} with {out['commits']} commits "
                f"({out['bytes']:,} bytes); `somna import {out['path']} PATH` restores it"
            )
        return EXIT_OK
    if not args.format:
        print(
            "somna export needs --format claude-md|agents-md|cursor-rules, or --bundle FILE", file=sys.stderr
        )
        return EXIT_USAGE
    stores = [memory.store(args.scope)] if args.scope else list(memory.stores.values())
    exported = portable.render(stores, args.format, args.budget)
    if args.output in (None, "-"):
        sys.stdout.write(exported.text)
    else:
        portable.write_text(Path(args.output), exported.text)
        print(
            f"wrote {args.output}: {len(exported.text):,} characters, {exported.shown} of {exported.total} "
            f"memories ({exported.left_out} did not fit, {exported.harmful} left out as harmful)",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    settings = Settings.from_env(store=args.store)
    dest = Path(args.path) if args.path else settings.user_store
    embedder = _embedder(settings)
    with progress.spinner("cloning the bundle"):
        store = portable.restore(Path(args.file), dest, embedder=embedder)
    try:
        report = progress.sync(store)
        indexed = report["indexed"] or store.index.count()
        print(f"imported {args.file} into {store.root}: {indexed} notes indexed")
    finally:
        store.close()
    return EXIT_OK


def cmd_sleep(args: argparse.Namespace) -> int:
    # Deliberately lazy: the sleep passes pull in numpy and pydantic models that `somna serve` must not wait for.
    from somna.sleep.cycle import Cycle, last_report
    from somna.sleep.llm import llm_passes

    memory = _open(args, model=not args.words)
    store = memory.store(args.scope)
    if args.report:
        text = last_report(store)
        print(text if text else "no sleep cycle has run on this store yet (`somna sleep --once`)", end="")
        return EXIT_OK
    report = Cycle(store, dry_run=args.dry_run, extra_passes=llm_passes(store)).run()
    if args.json:
        _print_json(report.__dict__)
    else:
        print(report.markdown(), end="")
    return EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    # Deliberately lazy: watchdog and the sleep passes, for this command only.
    from somna.daemon import Daemon, setup_logging, watch_folders
    from somna.sleep.llm import llm_passes

    memory = _open(
        args, model=True, wait=False
    )  # the model loads in the background; cycles use it when ready
    store = memory.store(args.scope)
    daemon = Daemon(
        store, idle=args.idle, extra_passes=llm_passes(store), watch=watch_folders(store, args.watch)
    )
    setup_logging(store)
    daemon.install_signal_handlers()
    print(f"somna daemon watching {store.root} (Ctrl-C or SIGTERM stops it)", file=sys.stderr)
    daemon.run()
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    memory = _open(args)
    ok = True
    reports = []
    for store in memory.stores.values():
        report = doctor.repair(store) if args.repair else doctor.check(store)
        reports.append(report)
        ok = ok and report["ok"]
        if not args.json:
            print("\n".join(doctor.human_lines(report)))
    if args.json:
        _print_json(reports)
    return EXIT_OK if ok else EXIT_ERROR


def cmd_model(args: argparse.Namespace) -> int:
    """Load the embedding model once: the first time, its ONNX form is exported to the cache."""
    settings = Settings.from_env(store=args.store)
    if settings.embedder == "none" or settings.embedder.startswith("hash"):
        if args.json:
            _print_json({"model": settings.embedder, "ready": settings.embedder != "none", "backend": ""})
        else:
            print(f"SOMNA_EMBEDDER={settings.embedder}: no model to load")
        return EXIT_OK
    embedder = make_embedder(settings.embedder)
    t0 = time.perf_counter()
    ready = isinstance(embedder, LazyEmbedder) and embedder.wait(600)
    took = time.perf_counter() - t0
    out = {
        "model": embedder.name,
        "ready": ready,
        "backend": getattr(embedder, "backend", ""),
        "dimensions": embedder.dim,
        "seconds": round(took, 2),
        "error": getattr(embedder, "error", None),
    }
    if args.json:
        _print_json(out)
    elif ready:
        print(f"{out['model']}: ready on {out['backend']} in {took:.1f} s ({out['dimensions']} dimensions)")
    else:
        print(f"{out['model']}: unavailable ({out['error']}); somna searches on words alone", file=sys.stderr)
    return EXIT_OK if ready else EXIT_ERROR


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
    sp = cmd(
        "model",
        cmd_model,
        "load the embedding model and say how it runs (the first time, this prepares its fast ONNX form)",
    )
    sp = cmd("doctor", cmd_doctor, "check that files, git and index agree; --repair fixes what it can")
    sp.add_argument("--repair", action="store_true")
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


if __name__ == "__main__":
    sys.exit(main())
