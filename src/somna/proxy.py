"""stdio <-> streamable HTTP: a `somna serve` that attaches to the shared server instead of serving itself.

It opens no store and loads no model: each JSON-RPC line read from stdin is posted to the shared server,
and whatever comes back (a JSON body, the events of an SSE answer, the GET stream's list_changed) is
written to stdout as a line. The client's own `initialize` goes through unchanged, so the server sees the
real client name (commits are authored by it).

The relay is the standard library's sockets and threads (`minihttp.py`), and `cli.py` starts it before
anything else of somna is imported: no MCP SDK, pydantic, asyncio, ssl, store or YAML. A relay weighs
16 MB (72 MB with the SDK and pydantic, 35 MB with anyio and httpx2 behind the full command line), which
counts once per harness session. `tests/test_http.py` drives real MCP client sessions through it, both
protocol eras, and a stand-in server checks its cancellations.

What it adds to a message is the HTTP headers the message needs, as the SDK's own client would set them:
the session id the server gave at initialize; after an initialize handshake, the negotiated
MCP-Protocol-Version; for a 2026-era request (its version in `params._meta`), that version with the
Mcp-Method and Mcp-Name headers. At 2026, a `notifications/cancelled` is not posted: it aborts the
request's POST, which is that era's cancellation.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from somna import minihttp
from somna.attach import Shared

log = logging.getLogger("somna.proxy")

# The MCP SDK's wire constants (mcp.shared.inbound, mcp_types); tests/test_http.py checks they still match.
PROTOCOL_VERSION_HEADER = "mcp-protocol-version"
SESSION_HEADER = "mcp-session-id"
METHOD_HEADER = "mcp-method"
NAME_HEADER = "mcp-name"
NAME_BEARING_METHODS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
PROTOCOL_VERSION_META_KEY = "io.modelcontextprotocol/protocolVersion"
MODERN_PROTOCOL_VERSIONS = ("2026-07-28",)
INTERNAL_ERROR = -32603
INVALID_REQUEST = -32600
_HEADER_SAFE = re.compile(r"^[\x20-\x7E]*$")
_B64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")
CONNECT_TIMEOUT = 30.0
CANCELLED = object()  # in_flight's mark for a request cancelled before its POST began


def encode_header_value(value: str) -> str:
    """A header value that survives HTTP: printable ASCII as is, else the SDK's base64 sentinel."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not _B64_SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def is_request(m: Any) -> bool:
    return isinstance(m, dict) and isinstance(m.get("method"), str) and "id" in m


def is_notification(m: Any) -> bool:
    return isinstance(m, dict) and isinstance(m.get("method"), str) and "id" not in m


def error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


class Headers:
    """Which HTTP headers each client message needs, from what the handshake negotiated."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.session: str | None = None
        self.initialize_ids: set[Any] = set()

    def base(self) -> dict[str, str]:
        headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        if self.session:
            headers[SESSION_HEADER] = self.session
        if self.version:
            headers[PROTOCOL_VERSION_HEADER] = self.version
        return headers

    def modern(self, message: Any) -> str | None:
        """The 2026-era version a request or notification carries in `params._meta`, if any."""
        params = message.get("params") if isinstance(message, dict) else None
        meta = params.get("_meta") if isinstance(params, dict) else None
        version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
        return version if version in MODERN_PROTOCOL_VERSIONS else None

    def outgoing(self, message: Any) -> dict[str, str]:
        if is_request(message) and message["method"] == "initialize":
            self.initialize_ids.add(message["id"])
            self.version = None  # the handshake carries its version in the body
            return {k: v for k, v in self.base().items() if k != PROTOCOL_VERSION_HEADER}
        headers = self.base()
        version = self.modern(message)
        if version is not None:
            self.version = version
            headers[PROTOCOL_VERSION_HEADER] = version
            headers[METHOD_HEADER] = message["method"]
            params = message.get("params") or {}
            name_key = NAME_BEARING_METHODS.get(message["method"])
            if name_key is not None and isinstance(params.get(name_key), str):
                headers[NAME_HEADER] = encode_header_value(params[name_key])
        return headers

    def incoming(self, message: Any) -> None:
        if isinstance(message, dict) and "result" in message and message.get("id") in self.initialize_ids:
            self.initialize_ids.discard(message["id"])
            result = message["result"]
            version = result.get("protocolVersion") if isinstance(result, dict) else None
            if isinstance(version, str):
                self.version = version


def sse_messages(lines: Any) -> Any:
    """The JSON-RPC messages of an SSE body (`message` events with data; priming events skipped)."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data and event == "message":
                yield json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    if data and event == "message":
        yield json.loads("\n".join(data))


class Relay:
    """stdin is read on the main thread; each request is posted on a thread of its own, so a slow answer
    holds up no other; what comes back is written to stdout a line at a time."""

    def __init__(self, shared: Shared) -> None:
        parts = urlsplit(shared.url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the shared server's address {shared.url!r} is not http://host:port/path")
        self.url, self.host, self.port = shared.url, parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        self.auth = {"authorization": f"Bearer {shared.token}"} if shared.token else {}
        self.wire = Headers()
        self.out_lock = threading.Lock()
        self.lock = threading.Lock()  # in_flight and the wire's state
        self.in_flight: dict[Any, tuple[Any, bool]] = {}  # request id -> (its exchange or None, modern)
        self.gone = False

    def emit(self, message: Any) -> None:
        with self.lock:
            self.wire.incoming(message)
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n"
        with self.out_lock:
            sys.stdout.buffer.write(line.encode("utf-8"))
            sys.stdout.buffer.flush()

    def connect(self, request_id: Any = None) -> minihttp.Exchange:
        """A connection for one exchange, known by its request id, so that a cancellation can close it."""
        conn = minihttp.Exchange(self.host, self.port, CONNECT_TIMEOUT)
        if request_id is not None:
            with self.lock:
                old = self.in_flight.get(request_id)
                self.in_flight[request_id] = (conn, old[1] if old else False)
                if old is not None and old[0] is CANCELLED:  # cancelled before its POST began
                    conn.close()
        return conn

    def send(
        self, conn: minihttp.Exchange, method: str, headers: dict[str, str], body: bytes = b""
    ) -> minihttp.Response:
        # no read timeout: a request may take long (the model loading), the GET stream stays quiet for hours
        return conn.send(method, self.path, {**self.auth, **headers}, body)

    def post(self, message: Any) -> None:
        with self.lock:
            headers = self.wire.outgoing(message)
        request_id = message["id"] if is_request(message) else None
        conn = None
        try:
            conn = self.connect(request_id)
            r = self.send(conn, "POST", headers, json.dumps(message).encode())
            if message.get("method") == "initialize" and r.headers.get(SESSION_HEADER):
                with self.lock:
                    self.wire.session = r.headers[SESSION_HEADER]
            if r.status == 202 or request_id is None:
                return
            kind = r.headers.get("content-type", "").lower()
            if r.status >= 400:
                body: Any = None
                if kind.startswith("application/json"):
                    try:
                        body = json.loads(r.read())
                    except (ValueError, OSError):
                        body = None
                if isinstance(body, dict) and isinstance(body.get("error"), dict):
                    self.emit({"jsonrpc": "2.0", "id": request_id, "error": body["error"]})
                elif r.status == 404:
                    self.emit(error(request_id, INVALID_REQUEST, "Session terminated"))
                else:
                    self.emit(error(request_id, INTERNAL_ERROR, "the server returned an error"))
                return
            if kind.startswith("application/json"):
                self.emit(json.loads(r.read()))
            elif kind.startswith("text/event-stream"):
                for reply in sse_messages(r.lines()):
                    if (
                        isinstance(reply, dict)
                        and ("result" in reply or "error" in reply)
                        and "method" not in reply
                    ):
                        reply["id"] = request_id
                        self.emit(reply)
                        return
                    self.emit(reply)
            else:
                self.emit(error(request_id, INVALID_REQUEST, f"Unexpected content type: {kind}"))
        except ValueError as exc:  # a body that is not JSON
            if request_id is not None:
                self.emit(error(request_id, INTERNAL_ERROR, f"unreadable answer: {exc}"))
        except OSError as exc:
            if conn is not None and conn.closed:
                return  # cancelled by the client: its POST aborted, nothing to answer
            self.server_gone(exc, request_id)
        finally:
            if conn is not None:
                conn.close()

    def server_gone(self, exc: Exception, request_id: Any) -> None:
        """Say so and exit, so that the harness sees it and can start a server of its own."""
        self.gone = True
        text = (
            f"the shared somna server at {self.url} is not answering ({type(exc).__name__}); this "
            "somna has stopped: reconnect it (Claude Code: /mcp) to start one of its own"
        )
        if request_id is not None:
            self.emit(error(request_id, INTERNAL_ERROR, text))
        log.warning("%s", text)
        logging.shutdown()
        os._exit(0)

    def listen(self) -> None:
        """The GET stream: what the server sends unasked (list_changed), reopened when it drops."""
        failures = 0
        while failures < 3 and self.wire.session and not self.gone:
            try:
                with self.lock:
                    headers = {k: v for k, v in self.wire.base().items() if k != "content-type"}
                headers["accept"] = "text/event-stream"
                with self.connect() as conn:
                    r = self.send(conn, "GET", headers)
                    if r.status != 200:
                        return  # 405: the server offers no GET stream
                    failures = 0
                    for message in sse_messages(r.lines()):
                        self.emit(message)
            except (OSError, ValueError) as exc:
                log.debug("GET stream: %s", exc)
            failures += 1
            time.sleep(0.5 * failures)

    def request(self, message: Any) -> None:
        try:
            self.post(message)
        finally:
            with self.lock:
                entry = self.in_flight.get(message["id"])
                if entry is not None and entry[0] not in (None, CANCELLED) and entry[0].closed:
                    del self.in_flight[message["id"]]

    def run(self) -> None:
        while raw := sys.stdin.buffer.readline():
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                message = json.loads(text)
            except ValueError as exc:
                log.warning("not a JSON-RPC message on stdin: %s", exc)
                continue
            if not isinstance(message, dict):
                log.warning("not a JSON-RPC message on stdin: %.80s", text)
                continue
            if (
                is_notification(message)
                and message["method"] == "notifications/cancelled"
                and self.cancel(message)
            ):
                continue
            if is_notification(message) and message["method"] == "notifications/initialized":
                threading.Thread(target=self.listen, name="somna-relay-listen", daemon=True).start()
            if is_request(message):
                with self.lock:
                    old = self.in_flight.get(message["id"])
                    modern = (
                        self.wire.modern(message) is not None or self.wire.version in MODERN_PROTOCOL_VERSIONS
                    )
                    self.in_flight[message["id"]] = (None, modern)
                if old is not None and old[0] not in (None, CANCELLED):
                    old[0].close()  # a reused id: the old POST must not answer for the new one
                threading.Thread(
                    target=self.request, args=(message,), name="somna-relay-post", daemon=True
                ).start()
            else:
                self.post(message)
        # stdin closed: the client has gone
        if self.wire.session and not self.gone:
            try:
                with self.lock:
                    headers = self.wire.base()
                conn = minihttp.Exchange(self.host, self.port, 2.0)
                with conn:
                    conn.send("DELETE", self.path, {**self.auth, **headers}, read_timeout=2.0).read(
                        limit=65536
                    )
            except (OSError, ValueError):
                pass

    def cancel(self, message: Any) -> bool:
        """At 2026 a cancellation aborts the request's POST and is not posted; below, it is posted."""
        params = message.get("params")
        request_id = params.get("requestId") if isinstance(params, dict) else None
        with self.lock:
            post = self.in_flight.get(request_id)
            if post is None:
                return self.wire.version in MODERN_PROTOCOL_VERSIONS
            conn, modern = post
            if not modern:
                return False
            if conn is None:
                self.in_flight[request_id] = (CANCELLED, modern)
        if conn is not None and conn is not CANCELLED:
            conn.close()
        return True


def run(shared: Shared) -> None:
    log.info("attached to the shared somna server at %s (pid %d)", shared.url, shared.pid)
    Relay(shared).run()
