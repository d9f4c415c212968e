"""`somna ui`: the page to review what the agents learned (memories, history, proposals, sleep, learning)."""

from __future__ import annotations

import argparse
import os
import sys

from somna.commands.common import EXIT_ERROR, EXIT_OK, open_stores
from somna.config import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    help = "open a local page to review what was learned: memories, history, proposals, sleep reports"
    sp = sub.add_parser("ui", help=help, description=help)
    sp.set_defaults(fn=cmd_ui)
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8766, help="port (default 8766; 0: any free port)")
    sp.add_argument("--no-browser", action="store_true", help="print the login link, do not open a browser")
    sp.add_argument("--words", action="store_true", help="search on words alone: do not load the model")
    sp.add_argument(
        "--link",
        action="store_true",
        help="print a one-time login link to the page of the running `somna serve --http` (at /ui)",
    )


def cmd_ui(args: argparse.Namespace) -> int:
    # Deliberately lazy: Starlette, Jinja2 and uvicorn are for this command only.
    from somna import attach
    from somna.ui.serve import serve, shared_link

    settings = Settings.from_env(store=args.store)
    if args.link:
        link = shared_link(settings, os.environ)
        if link is None:
            print("somna: no `somna serve --http` runs for these stores; `somna ui` serves the page itself",
                  file=sys.stderr)  # fmt: skip
            return EXIT_ERROR
        print(link)
        return EXIT_OK
    token = attach.ensure_token(settings, os.environ)
    memory = open_stores(args, model=not args.words, wait=False)
    try:
        serve(memory, token, host=args.host, port=args.port, open_browser=not args.no_browser)
    finally:
        memory.close()
    return EXIT_OK
