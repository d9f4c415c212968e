"""The commands between somna and a harness: serve it, install into it, capture its sessions, give it
context at the start of one, and the skills it reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from somna import capture, context, skill_store, skills
from somna.app import catalog_for
from somna.cli import exit_now, serve_stdio
from somna.commands.common import EXIT_ERROR, EXIT_OK, open_stores, print_json
from somna.config import Settings
from somna.install import run_install


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


def cmd_skills(args: argparse.Namespace) -> int:
    settings = Settings.from_env(store=args.store)
    if args.action == "check" and args.paths:
        found = skills.check_paths(Path(p) for p in args.paths)
    else:
        memory = open_stores(args)
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
                print_json(out)
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
                print_json(out)
                return EXIT_OK
            for s in out["skills"] + out.get("invalid", []):
                state = f"INVALID: {s['problems'][0]}" if s.get("invalid") else s["description"]
                print(f"{s['name']}  [{s['scope']}]  {state}")
            return EXIT_OK
        found = list(catalog.skills.values()) + catalog.invalid + catalog.shadowed
    problems = [p for s in found for p in s.problems]
    if args.json:
        print_json(
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
