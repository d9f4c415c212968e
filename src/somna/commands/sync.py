"""The commands that share a store: `somna init --project` / `--remote URL`, and `somna sync`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from somna import gitsync, project
from somna.commands.common import EXIT_ERROR, EXIT_OK, open_stores, print_json
from somna.config import Settings
from somna.store import Store
from somna.sync import SyncResult, sync_store


def init_shared(args: argparse.Namespace) -> int:
    """`somna init --project` (the project's store on its own branch) or `somna init --remote URL [PATH]`."""
    settings = Settings.from_env()
    if args.project:
        root, done = project.setup(project.project_root(Path(args.path or settings.cwd).resolve()))
        print(f"{done} {root} (branch {project.BRANCH}, ignored on the project's branches)")
    else:
        root = Path(args.path) if args.path else (Path(args.store) if args.store else settings.user_store)
        Store.init(root).close()
        print(f"store at {root.expanduser().resolve()}")
    if args.remote:
        branch = project.BRANCH if args.project else "main"
        gitsync.configure(root, args.remote, name="origin", branch=branch)
    store = Store(root, scope="project" if args.project else "user")
    try:
        if gitsync.remote_of(root) is None:
            print("no remote yet: `somna init --remote URL` shares it")
            return EXIT_OK
        result = sync_store(store)
    finally:
        store.close()
    print(describe(result))
    return EXIT_OK if result["status"] in ("synced", "up to date") else EXIT_ERROR


def cmd_sync(args: argparse.Namespace) -> int:
    memory = open_stores(args)
    stores = [memory.store(args.scope)] if args.scope else list(memory.stores.values())
    results: list[SyncResult] = []
    try:
        for store in stores:
            if args.remote:
                remote = gitsync.remote_of(store.root)
                gitsync.configure(
                    store.root,
                    args.remote,
                    name=remote.name if remote else "origin",
                    branch=remote.branch if remote else "main",
                )
            results.append(sync_store(store, push=not args.no_push, squash=args.squash))
    finally:
        memory.close()
    if args.json:
        print_json(results)
    else:
        for result in results:
            print(
                describe(result),
                file=sys.stdout if result["status"] in ("synced", "up to date", "no remote") else sys.stderr,
            )
    bad = [r for r in results if r["status"] not in ("synced", "up to date", "no remote")]
    return EXIT_ERROR if bad else EXIT_OK


def describe(result: SyncResult) -> str:
    lines = [
        f"{result['scope']} store: {result['status']}"
        + (f": {result['message']}" if result["message"] else "")
    ]
    if result["received"]:
        lines.append(f"  received the remote's changes; {result['indexed']} file(s) re-indexed")
    lines += [f"  {note}" for note in result["merged"]]
    if result["proposals"]:
        lines.append(
            f"  {len(result['proposals'])} version(s) from sync conflicts wait for review: `somna proposals`"
        )
    if result["pushed"]:
        lines.append("  pushed")
    return "\n".join(lines)
