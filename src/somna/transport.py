"""`somna serve --http`: one process, many clients, one warm embedding model, over streamable HTTP.

The MCP app is the SDK's own (`MCPServer.streamable_http_app`): sessions, the 413 for a request body over
MAX_BODY, and its Host/Origin checks (`TransportSecuritySettings`). In front of it sits `Guard`, which:

- answers GET /health with the server's pid (how a stdio `somna serve` makes sure http.json is not stale);
- refuses a request whose Origin header is not allowed (403): none, or a loopback origin, by default;
  more with --allow-origin or $SOMNA_HTTP_ORIGINS (comma-separated; ``https://host:*`` for any port);
- refuses a request without the bearer token (401), comparing in constant time, on loopback as well: on a
  machine with other accounts, or containers that share its network, loopback is not only its owner's.

The token is $SOMNA_HTTP_TOKEN, or the token file of the user store, made at the first start (mode 0600;
see `somna.attach`), which the owner's attaching relays and `somna ui` read.
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from somna import __version__, attach
from somna.attach import HEALTH_PATH, MCP_PATH, HttpConfigError
from somna.config import Settings
from somna.server import build_server

log = logging.getLogger("somna.transport")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_BODY = 2 * 1024 * 1024  # the largest tool call (propose_edit: 3 x 100,000 characters, JSON-escaped) fits
# A session with no request in flight and no open GET stream ends after this long (the SDK's default is 30
# minutes). An attached `somna serve` keeps its GET stream open, but does not open a new session if its own
# is ended, so sessions are let live long: through a night's pause, not forever (a killed client's session).
SESSION_IDLE = 24 * 3600.0
ORIGINS_ENV = "SOMNA_HTTP_ORIGINS"
HOSTS_ENV = "SOMNA_HTTP_HOSTS"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _wildcard(host: str) -> bool:
    return host.strip("[]") in ("", "0.0.0.0", "::")


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def allowed_origins(extra: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """Loopback origins (any port, http or https), then $SOMNA_HTTP_ORIGINS and --allow-origin."""
    base = [
        f"{scheme}://{name}{port}"
        for scheme in ("http", "https")
        for name in LOOPBACK_NAMES
        for port in ("", ":*")
    ]
    return base + _split((environ or {}).get(ORIGINS_ENV)) + [o.strip() for o in extra if o.strip()]


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """No Origin (not a browser) is allowed; otherwise an exact match, or a ``scheme://host:*`` pattern."""
    if origin is None:
        return True
    for pattern in allowed:
        if origin == pattern:
            return True
        if pattern.endswith(":*"):
            base = pattern[:-2] + ":"
            if origin.startswith(base) and origin[len(base) :].isdigit():
                return True
    return False


def security(host: str, origins: Sequence[str], environ: Mapping[str, str]) -> TransportSecuritySettings:
    """The SDK's Host and Origin checks (DNS rebinding): loopback names, the bound host, $SOMNA_HTTP_HOSTS.

    A wildcard bind (0.0.0.0, ::) cannot know the names clients will use: unless $SOMNA_HTTP_HOSTS lists
    them, the Host check is off there (the token, required on such a bind, is what protects it)."""
    hosts = [f"{name}{port}" for name in LOOPBACK_NAMES for port in ("", ":*")] + _split(
        environ.get(HOSTS_ENV)
    )
    if not _wildcard(host) and not is_loopback(host):
        name = f"[{host}]" if ":" in host and not host.startswith("[") else host
        hosts += [name, f"{name}:*"]
    enabled = not _wildcard(host) or bool(_split(environ.get(HOSTS_ENV)))
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=enabled, allowed_hosts=hosts, allowed_origins=list(origins)
    )


class Guard:
    """ASGI middleware in front of the MCP app: /health, the Origin check (403), the bearer token (401)."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, origins: Sequence[str], ui: ASGIApp | None = None
    ) -> None:
        self.app = app
        self.ui = ui  # the page (`somna ui`) at /ui: its own guard checks the token, Host and Origin
        self.token = token.encode("utf-8") if token else None
        self.origins = list(origins)
        self.pid = os.getpid()

    def _authorized(self, headers: Headers) -> bool:
        if self.token is None:
            return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        given = value.strip().encode("utf-8") if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(given, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan: the MCP app's session manager and somna's stores
            await self.app(scope, receive, send)
            return
        if self.ui is not None and (scope["path"] + "/").startswith("/ui/"):
            if scope["path"] == "/ui":
                await RedirectResponse("/ui/", status_code=307)(scope, receive, send)
                return
            await self.ui({**scope, "root_path": scope.get("root_path", "") + "/ui"}, receive, send)
            return
        headers = Headers(scope=scope)
        response: Any = None
        origin = headers.get("origin")
        if not origin_allowed(origin, self.origins):
            log.warning("refused a request from origin %r", origin[:100] if origin else origin)
            response = PlainTextResponse("Origin not allowed", status_code=403)
        elif scope["path"] == HEALTH_PATH:
            response = JSONResponse(
                {
                    "server": "somna",
                    "version": __version__,
                    "pid": self.pid,
                    "authorized": self._authorized(headers),
                }
            )
        elif not self._authorized(headers):
            response = PlainTextResponse(
                "A valid bearer token is required",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="somna"'},
            )
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _Server(uvicorn.Server):
    """uvicorn's server, taking http.json back first thing on shutdown (uvicorn re-raises the signal that
    stopped it once it is done, so code after `serve()` would not run)."""

    def __init__(self, config: uvicorn.Config, *, on_shutdown: Any) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_shutdown()
        await super().shutdown(sockets)


def check_bind(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise HttpConfigError(
            f"refusing to serve on {host or 'all addresses'} without a bearer token: set {attach.TOKEN_ENV}, "
            "or run `somna serve --http --new-token` once to create a token file (mode 0600) that clients "
            "on this machine read; bind 127.0.0.1 to serve this machine only"
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise HttpConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            + (" (another somna serve --http? use --port)" if exc.errno == errno.EADDRINUSE else "")
        ) from None
    return sock


def build_app(
    settings: Settings,
    *,
    host: str,
    token: str | None,
    origins: Sequence[str],
    environ: Mapping[str, str],
    max_body: int = MAX_BODY,
    ui: ASGIApp | None = None,
) -> Guard:
    """The whole ASGI app: Guard in front of the SDK's streamable-HTTP app of `build_server(eager=True)`."""
    server = build_server(settings, eager=True)
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        max_request_body_size=max_body,
        session_idle_timeout=SESSION_IDLE,
        transport_security=security(host, origins, environ),
        host=host,
    )
    return Guard(mcp_app, token=token, origins=origins, ui=ui)


def serve(
    settings: Settings,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    extra_origins: Sequence[str] = (),
    new_token: bool = False,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run the shared server until SIGINT/SIGTERM; announce it in .somna/http.json while it runs."""
    env = os.environ if environ is None else environ
    if new_token:
        path = attach.new_token(settings)
        print(f"somna: bearer token in {path} (mode 0600; clients on this machine read it)", file=sys.stderr)
    token = attach.load_token(settings, env)
    if token is None and is_loopback(host):  # made for the owner; another address wants a deliberate one
        token = attach.ensure_token(settings, env)
    check_bind(host, token)
    origins = allowed_origins(extra_origins, env)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    pid = os.getpid()
    app = build_app(settings, host=host, token=token, origins=origins, environ=env)  # creates the user store
    if token is not None:  # the page, behind the same token (`somna ui --link` prints a login link)
        from somna.ui.serve import mounted  # Jinja2 and the page's views: for this server only

        hosts = None if _wildcard(host) else [f"{n}:{port}" for n in {*LOOPBACK_NAMES, "::1", host}]
        app.ui, _ = mounted(settings, token, hosts)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    server = _Server(config, on_shutdown=lambda: attach.remove_info(settings, pid))
    connect = "127.0.0.1" if _wildcard(host) and ":" not in host else ("::1" if _wildcard(host) else host)
    url_host = f"[{connect.strip('[]')}]" if ":" in connect else connect
    info = {
        "pid": pid,
        "url": f"http://{url_host}:{port}{MCP_PATH}",
        "host": host,
        "connect_host": connect.strip("[]"),
        "port": port,
        "token": token is not None,
        "stores": attach.store_paths(settings),
        "version": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.02)
        path = attach.write_info(settings, info)
        print(
            f"somna: serving {info['url']} (bearer token required: {attach.TOKEN_ENV} or "
            f"{attach.token_path(settings)}; {path}); Ctrl-C stops it",
            file=sys.stderr,
        )

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        attach.remove_info(settings, pid)
        sock.close()
