"""stdio <-> streamable HTTP: a `somna serve` that attaches to the shared server instead of serving itself.

It opens no store and loads no model: each JSON-RPC line read from stdin is posted to the shared server,
and whatever comes back (a JSON body, the events of an SSE answer, the GET stream's list_changed) is
written to stdout as a line. The client's own `initialize` goes through unchanged, so the server sees the
real client name (commits are authored by it).

The relay is plain anyio + httpx2 + json: it imports neither the MCP SDK nor pydantic, which cost a relay
~45 MB (72 MB a relay with them, against a 290 MB server; five relays then outweighed the memory the
shared server saves). `tests/test_http.py` drives real MCP client sessions through it, both protocol eras.

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
import re
import sys
from typing import Any

import anyio
import httpx2

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


async def sse_messages(response: httpx2.Response) -> Any:
    """The JSON-RPC messages of an SSE body (`message` events with data; priming events skipped)."""
    event, data = "message", []
    async for line in response.aiter_lines():
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
    def __init__(self, shared: Shared) -> None:
        self.url = shared.url
        self.token = shared.token
        self.wire = Headers()
        self.out_lock = anyio.Lock()
        self.in_flight: dict[Any, tuple[anyio.CancelScope, bool]] = {}  # request id -> (scope, modern)
        self.gone = False

    async def emit(self, message: Any) -> None:
        self.wire.incoming(message)
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n"
        async with self.out_lock:
            await anyio.to_thread.run_sync(_write_stdout, line)

    async def post(self, client: httpx2.AsyncClient, message: Any, tg: anyio.abc.TaskGroup) -> None:
        headers = self.wire.outgoing(message)
        request_id = message["id"] if is_request(message) else None
        try:
            body_out = json.dumps(message).encode()
            async with client.stream("POST", self.url, content=body_out, headers=headers) as r:
                if message.get("method") == "initialize" and r.headers.get(SESSION_HEADER):
                    self.wire.session = r.headers[SESSION_HEADER]
                if r.status_code == 202 or request_id is None:
                    return
                kind = r.headers.get("content-type", "").lower()
                if r.status_code >= 400:
                    body: Any = None
                    if kind.startswith("application/json"):
                        try:
                            body = json.loads(await r.aread())
                        except (ValueError, httpx2.StreamError):
                            body = None
                    if isinstance(body, dict) and isinstance(body.get("error"), dict):
                        await self.emit({"jsonrpc": "2.0", "id": request_id, "error": body["error"]})
                    elif r.status_code == 404:
                        await self.emit(error(request_id, INVALID_REQUEST, "Session terminated"))
                    else:
                        await self.emit(error(request_id, INTERNAL_ERROR, "the server returned an error"))
                    return
                if kind.startswith("application/json"):
                    await self.emit(json.loads(await r.aread()))
                elif kind.startswith("text/event-stream"):
                    async for reply in sse_messages(r):
                        if isinstance(reply, dict) and ("result" in reply or "error" in reply) \
                                and "method" not in reply:
                            reply["id"] = request_id
                            await self.emit(reply)
                            return
                        await self.emit(reply)
                else:
                    await self.emit(error(request_id, INVALID_REQUEST, f"Unexpected content type: {kind}"))
        except httpx2.TransportError as exc:
            self.gone = True
            message_text = (
                f"the shared somna server at {self.url} is not answering ({type(exc).__name__}); this "
                "somna has stopped: reconnect it (Claude Code: /mcp) to start one of its own"
            )
            if request_id is not None:
                await self.emit(error(request_id, INTERNAL_ERROR, message_text))
            log.warning("%s", message_text)
            tg.cancel_scope.cancel()  # exit, so that the harness sees it and can start a server of its own
        except ValueError as exc:  # a body that is not JSON
            if request_id is not None:
                await self.emit(error(request_id, INTERNAL_ERROR, f"unreadable answer: {exc}"))

    async def listen(self, client: httpx2.AsyncClient) -> None:
        """The GET stream: what the server sends unasked (list_changed), reopened when it drops."""
        failures = 0
        while failures < 3 and self.wire.session:
            try:
                headers = {k: v for k, v in self.wire.base().items() if k != "content-type"}
                headers["accept"] = "text/event-stream"
                async with client.stream("GET", self.url, headers=headers) as r:
                    if r.status_code != 200:
                        return  # 405: the server offers no GET stream
                    failures = 0
                    async for message in sse_messages(r):
                        await self.emit(message)
            except (httpx2.HTTPError, ValueError) as exc:
                log.debug("GET stream: %s", exc)
            failures += 1
            await anyio.sleep(0.5 * failures)

    async def run(self) -> None:
        auth = {"authorization": f"Bearer {self.token}"} if self.token else {}
        # read=None: the GET stream may stay quiet for hours; the client's own timeouts bound a request.
        timeout = httpx2.Timeout(30.0, read=None)
        lines, sink = _stdin_lines()
        async with (
            httpx2.AsyncClient(headers=auth, timeout=timeout, trust_env=False) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(sink)
            async for raw in lines:
                try:
                    message = json.loads(raw)
                except ValueError as exc:
                    log.warning("not a JSON-RPC message on stdin: %s", exc)
                    continue
                if not isinstance(message, dict):
                    log.warning("not a JSON-RPC message on stdin: %.80s", raw)
                    continue
                if is_notification(message) and message["method"] == "notifications/cancelled" \
                        and self._cancel(message):
                    continue
                if is_notification(message) and message["method"] == "notifications/initialized":
                    tg.start_soon(self.listen, client)
                if is_request(message):
                    scope = anyio.CancelScope()
                    old = self.in_flight.get(message["id"])
                    if old is not None:
                        old[0].cancel()  # a reused id: the old POST must not answer for the new one
                    self.in_flight[message["id"]] = (scope, self.wire.modern(message) is not None
                                                     or self.wire.version in MODERN_PROTOCOL_VERSIONS)
                    tg.start_soon(self._request, client, message, scope, tg)
                else:
                    await self.post(client, message, tg)
            # stdin closed: the client has gone
            if self.wire.session and not self.gone:
                with anyio.move_on_after(2):
                    await client.delete(self.url, headers=self.wire.base())
            tg.cancel_scope.cancel()

    async def _request(self, client: httpx2.AsyncClient, message: Any, scope: anyio.CancelScope,
                       tg: anyio.abc.TaskGroup) -> None:
        try:
            with scope:
                await self.post(client, message, tg)
        finally:
            if self.in_flight.get(message["id"], (None,))[0] is scope:
                del self.in_flight[message["id"]]

    def _cancel(self, message: Any) -> bool:
        """At 2026 a cancellation aborts the request's POST and is not posted; below, it is posted."""
        params = message.get("params")
        request_id = params.get("requestId") if isinstance(params, dict) else None
        post = self.in_flight.get(request_id)
        if post is not None:
            scope, modern = post
            if not modern:
                return False
            scope.cancel()
            return True
        return self.wire.version in MODERN_PROTOCOL_VERSIONS


def _write_stdout(line: str) -> None:
    sys.stdout.buffer.write(line.encode("utf-8"))
    sys.stdout.buffer.flush()


def _stdin_lines() -> tuple[Any, Any]:
    """(an async iterator of stdin's lines, the task that reads them on a thread)."""
    send, receive = anyio.create_memory_object_stream[str](64)

    async def sink() -> None:
        async with send:
            while True:
                raw = await anyio.to_thread.run_sync(sys.stdin.buffer.readline, abandon_on_cancel=True)
                if not raw:
                    return
                text = raw.decode("utf-8", errors="replace").strip()
                if text:
                    await send.send(text)

    return receive, sink


def run(shared: Shared) -> None:
    log.info("attached to the shared somna server at %s (pid %d)", shared.url, shared.pid)
    anyio.run(Relay(shared).run)
