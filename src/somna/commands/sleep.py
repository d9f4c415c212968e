"""The commands of sleep-time: one consolidation cycle now (`somna sleep`), or the daemon that runs them."""

from __future__ import annotations

import argparse
import sys

from somna.commands.common import EXIT_OK, open_stores, print_json


def cmd_sleep(args: argparse.Namespace) -> int:
    # Deliberately lazy: the sleep passes pull in numpy and pydantic models that `somna serve` must not wait for.
    from somna.sleep.cycle import Cycle, last_report
    from somna.sleep.llm import llm_passes

    memory = open_stores(args, model=not args.words)
    store = memory.store(args.scope)
    if args.report:
        text = last_report(store)
        print(text if text else "no sleep cycle has run on this store yet (`somna sleep --once`)", end="")
        return EXIT_OK
    report = Cycle(store, dry_run=args.dry_run, extra_passes=llm_passes(store)).run()
    if args.json:
        print_json(report.__dict__)
    else:
        print(report.markdown(), end="")
    return EXIT_OK


def cmd_daemon(args: argparse.Namespace) -> int:
    # Deliberately lazy: watchdog and the sleep passes, for this command only.
    from somna.daemon import Daemon, setup_logging, watch_folders
    from somna.sleep.llm import llm_passes

    # the model loads in the background; cycles use it when ready
    memory = open_stores(args, model=True, wait=False)
    store = memory.store(args.scope)
    daemon = Daemon(
        store, idle=args.idle, extra_passes=llm_passes(store), watch=watch_folders(store, args.watch)
    )
    setup_logging(store)
    daemon.install_signal_handlers()
    print(f"somna daemon watching {store.root} (Ctrl-C or SIGTERM stops it)", file=sys.stderr)
    daemon.run()
    return EXIT_OK
