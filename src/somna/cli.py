"""The `somna` command: `somna serve` over stdio is started here; every other command in `commands/`.

A harness starts `somna serve` once per session. When a shared server runs (`somna serve --http`), that
process is only a relay (`proxy.py`), and five sessions mean five of them: so the way to it imports the
config, the attach check and the relay, nothing else of somna. The other commands import what they need
in `commands/`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from somna.config import Settings
from somna.errors import SomnaError

EXIT_OK, EXIT_ERROR = 0, 1


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, settings.log_level, logging.WARNING),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


def plain_serve(args: list[str]) -> tuple[bool, str | None]:
    """Whether the command line is `somna [--store S] serve` and nothing more; and S."""
    store = None
    i = 0
    while i < len(args):
        if args[i] == "--store" and i + 1 < len(args):
            store, i = args[i + 1], i + 2
        elif args[i].startswith("--store="):
            store, i = args[i].split("=", 1)[1], i + 1
        else:
            return args[i:] == ["serve"], store
    return False, store


def serve_stdio(settings: Settings) -> NoReturn:
    """The MCP server over stdio, or a relay to the shared server when one runs for these stores."""
    from somna import attach

    if attach.wanted(os.environ) and (shared := attach.find_shared(settings, os.environ)) is not None:
        from somna import proxy  # stdlib sockets and threads: no MCP SDK, no store, no model

        proxy.run(shared)
    else:
        from somna.server import build_server  # deliberately lazy: mcp and starlette take ~0.5 s to import

        build_server(settings).run("stdio")
    exit_now()


def exit_now() -> NoReturn:
    """End a server process once its client has gone."""
    # The client has gone and the lifespan has closed the stores. A background thread may still be
    # inside torch (model load, embedding backfill); letting the interpreter tear it down aborts the
    # process. Index writes are SQLite transactions, so ending here loses nothing.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_OK)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    serve, store = plain_serve(args)
    if serve:
        try:
            settings = Settings.from_env(store=store)
            setup_logging(settings)
            serve_stdio(settings)
        except SomnaError as exc:
            print(f"somna: {exc}", file=sys.stderr)
            return EXIT_ERROR
    from somna.commands import main as run_command

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
