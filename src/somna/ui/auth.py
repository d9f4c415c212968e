"""Who may use the page: the token, the one-time login link, the cookie, Host and Origin, the page's headers.

The page has the same door as `somna serve --http`: the bearer token of the user store (made at the first
start, mode 0600; see `somna.attach`). A browser does not send a bearer token, so, as Jupyter does, `somna ui`
prints (and opens) a one-time link: ``/login?code=…``, a code signed with the token that expires in minutes
and opens once. It sets a cookie (HttpOnly, SameSite=Strict) whose value is derived from the token, not the
token itself. Every other request needs that cookie or the bearer token, on loopback as well.

On top of that, `Guard`:
- refuses a Host the server was not bound as (421: DNS rebinding);
- refuses a state-changing request (anything but GET and HEAD) whose Origin is not the page's own (403),
  or that has no Origin and no `Sec-Fetch-Site: same-origin` (cross-site request forgery);
- sets a strict Content-Security-Policy (scripts from the page's own static file only, nothing inline),
  no framing, no referrer to other sites, no caching, on every answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("somna.ui.auth")

COOKIE = "somna_ui"
LOGIN_PATH = "/login"
CODE_TTL = 300.0  # seconds a login link stays valid
SAFE_METHODS = ("GET", "HEAD")
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make a form post send `Origin: null`
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]", "::1")


def session_value(token: str) -> str:
    """The cookie's value: derived from the token (the cookie never holds the token itself)."""
    return hmac.new(token.encode(), b"somna-ui-session", hashlib.sha256).hexdigest()


class Codes:
    """One-time login codes: ``<time>.<nonce>.<signature>``, signed with the token, good once, for CODE_TTL."""

    def __init__(self, token: str) -> None:
        self.key = token.encode()
        self.used: dict[str, float] = {}
        self.lock = threading.Lock()

    def _sign(self, stamp: str, nonce: str) -> str:
        return hmac.new(self.key, f"login.{stamp}.{nonce}".encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        stamp, nonce = str(int(time.time())), secrets.token_urlsafe(12)
        return f"{stamp}.{nonce}.{self._sign(stamp, nonce)}"

    def redeem(self, code: str) -> bool:
        parts = code.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(code) > 200:
            return False
        stamp, nonce, sig = parts
        if not hmac.compare_digest(sig, self._sign(stamp, nonce)):
            return False
        now = time.time()
        if not 0 <= now - int(stamp) <= CODE_TTL:
            return False
        with self.lock:
            self.used = {c: t for c, t in self.used.items() if now - t <= CODE_TTL * 2}
            if code in self.used:
                return False
            self.used[code] = now
        return True


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host headers the page answers: loopback names and the address it is bound to, with its port."""
    names = set(LOOPBACK_NAMES) | {host, f"[{host}]" if ":" in host and not host.startswith("[") else host}
    return {f"{n}:{port}" for n in names} | ({*names} if port == 80 else set())


def same_origin(origin: str, host_header: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host_header


class Guard:
    """ASGI middleware in front of the page: Host, login, cookie or token, Origin, and the security headers.

    `prefix`: where the page is mounted (``/ui`` in `somna serve --http`, "" for `somna ui`)."""

    def __init__(
        self, app: ASGIApp, *, token: str, hosts: Sequence[str] | None, codes: Codes, prefix: str = ""
    ) -> None:
        self.app = app
        self.token = token.encode()
        self.session = session_value(token).encode()
        self.hosts = set(hosts) if hosts is not None else None  # None: the Host check is someone else's
        self.codes = codes
        self.prefix = prefix

    def authorized(self, headers: Headers) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token):
            return True
        cookies = [c.strip().partition("=") for c in headers.get("cookie", "").split(";")]
        return any(n == COOKIE and hmac.compare_digest(v.encode(), self.session) for n, _, v in cookies)

    def refusal(self, scope: Scope, headers: Headers) -> Response | None:
        host = headers.get("host", "")
        if self.hosts is not None and host not in self.hosts:
            log.warning("refused a request for host %r", host[:100])
            return PlainTextResponse("Host not allowed", status_code=421)
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            fetch_site = headers.get("sec-fetch-site")
            if origin is not None and not same_origin(origin, host):
                log.warning("refused a %s from origin %r", scope["method"], origin[:100])
                return PlainTextResponse("Origin not allowed", status_code=403)
            if origin is None and fetch_site != "same-origin":
                return PlainTextResponse(
                    "A change must come from the page itself (no Origin)", status_code=403
                )
        path = scope["path"][len(self.prefix) :] if scope["path"].startswith(self.prefix) else scope["path"]
        if path == LOGIN_PATH:
            return self.login(scope)
        if path.startswith("/static/"):
            return None
        if not self.authorized(headers):
            return PlainTextResponse(
                "somna: not signed in. Open the page through the link `somna ui` prints (it works once).",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="somna"'},
            )
        return None

    def login(self, scope: Scope) -> Response:
        query = dict(
            p.partition("=")[::2] for p in scope.get("query_string", b"").decode("latin-1").split("&") if p
        )
        if not self.codes.redeem(query.get("code", "")):
            return PlainTextResponse(
                "somna: this login link was used already or has expired; run `somna ui` for a new one.",
                status_code=403,
            )
        response = RedirectResponse(f"{self.prefix}/", status_code=303)
        response.set_cookie(
            COOKIE, self.session.decode(), httponly=True, samesite="strict", path=self.prefix or "/"
        )
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        response = self.refusal(scope, Headers(scope=scope))
        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
