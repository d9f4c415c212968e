"""The commands on memories: add, search, show, log, revert, the proposals queue, and reindex."""

from __future__ import annotations

import argparse
import sys

from somna import progress
from somna.commands.common import EXIT_OK, EXIT_USAGE, open_stores, print_json


def cmd_add(args: argparse.Namespace) -> int:
    content = sys.stdin.read() if args.content in (None, "-") else args.content
    memory = open_stores(args)
    store = memory.store(args.scope)
    out = store.write(
        content, title=args.title, type=args.type, tags=args.tag, author="human", force=args.force
    )
    if args.json:
        print_json(out)
    else:
        print(f"wrote {out['id']} ({out['path']} in the {store.scope} store)")
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    memory = open_stores(args, model=not args.words)
    out = memory.search(
        " ".join(args.query),
        scope=args.scope,
        limit=args.limit,
        type=args.type,
        tags=args.tag,
        include_archived=args.archived,
    )
    if args.json:
        print_json(out)
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
    memory = open_stores(args)
    out = memory.locate(args.id, args.scope).read(args.id)
    if args.json:
        print_json(out)
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
    memory = open_stores(args)
    out = memory.locate(args.id, args.scope).history(args.id, limit=args.limit, diff=args.diff)
    if args.json:
        print_json(out)
        return EXIT_OK
    for v in out["versions"]:
        print(f"{v['commit']}  {v['date']}  {v['author']:<16} {v['message']}  (version {v['version']})")
    if args.diff and out.get("diff"):
        print(out["diff"], end="")
    return EXIT_OK


def cmd_revert(args: argparse.Namespace) -> int:
    memory = open_stores(args)
    out = memory.locate(args.id, args.scope).revert(args.id, to=args.to, author="human")
    print(f"reverted {out['id']} to {out['to_commit']} (new version {out['version']})")
    return EXIT_OK


def cmd_proposals(args: argparse.Namespace) -> int:
    memory = open_stores(args)
    store = memory.store(args.scope)
    if args.action == "list":
        items = store.proposals()
        if args.json:
            print_json(items)
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
        out = store.accept(args.id, author="human", force=args.force)
        done = (
            f"{out['id']} is now version {out['version']}"
            if "version" in out
            else f"{out.get('kind')} applied"
        )
        print(f"accepted {args.id}: {done}")
        for why in out.get("breaks", []):
            print(f"  it takes away what the exam asked: {why}")
    else:
        store.reject(args.id, author="human", reason=args.reason)
        print(f"rejected {args.id}")
    return EXIT_OK


def cmd_reindex(args: argparse.Namespace) -> int:
    memory = open_stores(args, model=not args.words)
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
