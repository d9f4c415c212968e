"""The commands of sleep-time: one consolidation cycle now (`somna sleep`), or the daemon that runs them."""

from __future__ import annotations

import argparse
import sys

from somna.commands.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, open_stores, print_json
from somna.config import Settings


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
    report = Cycle(store, dry_run=args.dry_run, extra_passes=llm_passes(store), gate=not args.no_gate).run()
    if args.json:
        print_json(report.__dict__)
    else:
        print(report.markdown(), end="")
    return EXIT_OK


def cmd_exam(args: argparse.Namespace) -> int:
    """Ask the store's exam (derived, learned and written probes): the score and every failing probe. With
    --add, write a person's probe into exams/probes.yaml instead (committed as `human`)."""
    # Deliberately lazy, as for `somna sleep`.
    from somna.sleep import exam

    memory = open_stores(args, model=not args.words)
    store = memory.store(args.scope)
    if args.add:
        if not args.expect:
            print("--add needs --expect: the text its answer must hold", file=sys.stderr)
            return EXIT_USAGE
        path = exam.add_probe(store, args.add, args.expect, author="human")
        print(f"added to {path}: {args.add!r} must find {args.expect}")
        return EXIT_OK
    probes = exam.probes_of(store)
    asked = probes if args.all else exam.sample(probes, exam.SAMPLE)
    outcomes = exam.run(store, asked)
    failing = [o for o in outcomes if not o.passed]
    if args.json:
        print_json(
            {
                "score": exam.score(outcomes),
                "probes": len(outcomes),
                "failing": [o.to_json() for o in failing],
            }
        )
    else:
        by_source = {s: sum(o.probe.source == s for o in outcomes) for s in exam.SOURCES}
        sampled = (
            f"; a sample of the {len(probes)} (--all asks every one)" if len(asked) < len(probes) else ""
        )
        sources = ", ".join(f"{n} {s}" for s, n in by_source.items())
        passed = len(outcomes) - len(failing)
        print(f"exam of the {store.scope} store: {passed}/{len(outcomes)} probes pass ({sources}){sampled}")
        for o in failing:
            print(
                f"  FAIL [{o.probe.source}] {o.probe.query!r} expects {list(o.probe.expect)}; hits: {o.hits}"
            )
    return EXIT_OK if not failing else EXIT_ERROR


def cmd_daemon(args: argparse.Namespace) -> int:
    # Deliberately lazy: watchdog and the sleep passes, for this command only.
    from somna.background import setup_logging
    from somna.daemon import Daemon, watch_folders
    from somna.sleep.llm import llm_passes

    # the model loads in the background; cycles use it when ready
    memory = open_stores(args, model=True, wait=False)
    store = memory.store(args.scope)
    settings = Settings.from_env(store=args.store)
    daemon = Daemon(
        store,
        idle=args.idle,
        extra_passes=llm_passes(store),
        watch=watch_folders(store, args.watch),
        lock_fd=args.lock_fd,
        linger=settings.daemon_linger if args.background else None,
    )
    setup_logging(store.layout, alone=args.background)
    daemon.install_signal_handlers()
    if not args.background:
        print(f"somna daemon watching {store.root} (Ctrl-C or SIGTERM stops it)", file=sys.stderr)
    daemon.run()
    return EXIT_OK
