"""Run the page: bind (127.0.0.1 by default), print the one-time login link, open it in a browser."""

from __future__ import annotations

import logging
import sys
import webbrowser
from collections.abc import Mapping

import uvicorn

from somna import attach
from somna.app import open_memory
from somna.config import Settings
from somna.scopes import Memory
from somna.transport import DEFAULT_HOST, bind, is_loopback
from somna.ui import auth
from somna.ui.app import build_app

log = logging.getLogger("somna.ui")

DEFAULT_PORT = 8766
MOUNT = "/ui"  # where `somna serve --http` serves the page


def login_url(host: str, port: int, codes: auth.Codes, prefix: str = "") -> str:
    name = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{name}:{port}{prefix}{auth.LOGIN_PATH}?code={codes.issue()}"


def serve(
    memory: Memory,
    token: str,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Serve the page until Ctrl-C or SIGTERM."""
    if not is_loopback(host):
        print(
            f"somna ui: listening on {host}: anyone who can reach it still needs the token", file=sys.stderr
        )
    sock = bind(host, port)
    port = sock.getsockname()[1]
    sock.listen(128)  # a browser that opens the link before uvicorn runs waits instead of being refused
    codes = auth.Codes(token)
    app = build_app(memory, token=token, codes=codes, hosts=sorted(auth.allowed_hosts(host, port)))
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=3,
        log_level=logging.getLogger().getEffectiveLevel(),
    )  # fmt: skip
    url = login_url("127.0.0.1" if host in ("0.0.0.0", "::", "") else host, port, codes)
    print(f"somna ui: open {url}", flush=True)
    print(f"(the link works once, for {auth.CODE_TTL / 60:.0f} minutes; the token is {attach.TOKEN_ENV} or "
          "the store's .somna/http-token; Ctrl-C stops it)", file=sys.stderr, flush=True)  # fmt: skip
    if open_browser:
        webbrowser.open(url)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def mounted(settings: Settings, token: str, hosts: list[str] | None) -> tuple[auth.Guard, Memory]:
    """The page as `somna serve --http` serves it at /ui, behind the same token: on stores of its own (the
    shared server's are its MCP app's), searching on words (one model in the process is the server's)."""
    memory = open_memory(settings, None, create_user=False)
    app = build_app(memory, token=token, codes=auth.Codes(token), hosts=hosts, prefix=MOUNT)
    return app, memory


def shared_link(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """A one-time login link to the page of the shared server of these stores, if one runs."""
    shared = attach.find_shared(settings, environ)
    if shared is None or not shared.token:
        return None
    base = shared.url.rsplit("/", 1)[0]  # http://host:port
    return f"{base}{MOUNT}{auth.LOGIN_PATH}?code={auth.Codes(shared.token).issue()}"
