"""stdio <-> streamable HTTP: a `somna serve` that attaches to the shared server instead of serving itself.

It opens no store and loads no model: JSON-RPC messages read from stdin are posted to the shared server by
the SDK's streamable-HTTP client transport, and whatever comes back (responses, notifications, the GET
stream's list_changed) is written to stdout by the SDK's stdio transport. The client's own `initialize`
goes through unchanged, so the server sees the real client name (commits are authored by it).

The one thing the pump adds is the HTTP headers a message needs: after an initialize handshake, the
negotiated MCP-Protocol-Version; for a 2026-era request (its version in `params._meta`), that version with
the Mcp-Method and Mcp-Name headers, as the SDK's own client session would set them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import httpx2
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
)
from mcp.shared.message import ClientMessageMetadata, SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    PROTOCOL_VERSION_META_KEY,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from somna.attach import Shared

log = logging.getLogger("somna.proxy")


class _Relay(httpx2.AsyncBaseTransport):
    """HTTP to the shared server; when it stops answering, a JSON-RPC error for the request, not a crash.

    The SDK's transport hands a JSON error body to the client as the answer to its request; `gone` then
    tells the pump to stop, so that the harness sees this server exit and can start a new one of its own.
    """

    def __init__(self, url: str, gone: anyio.Event) -> None:
        self.url, self.gone = url, gone
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self.inner.handle_async_request(request)
        except httpx2.TransportError as exc:
            self.gone.set()
            message = (
                f"the shared somna server at {self.url} is not answering ({type(exc).__name__}); this "
                "somna has stopped: reconnect it (Claude Code: /mcp) to start one of its own"
            )
            body = json.dumps(
                {"jsonrpc": "2.0", "id": None, "error": {"code": INTERNAL_ERROR, "message": message}}
            )
            return httpx2.Response(
                503, headers={"content-type": "application/json"}, content=body.encode(), request=request
            )

    async def aclose(self) -> None:
        await self.inner.aclose()


class Headers:
    """Which HTTP headers each client message needs, from what the handshake negotiated."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.initialize_ids: set[Any] = set()

    def outgoing(self, message: Any) -> dict[str, str] | None:
        if isinstance(message, JSONRPCRequest) and message.method == "initialize":
            self.initialize_ids.add(message.id)
            return None  # the handshake carries its version in the body
        if isinstance(message, JSONRPCRequest | JSONRPCNotification):
            params = message.params or {}
            meta = params.get("_meta")
            version = meta.get(PROTOCOL_VERSION_META_KEY) if isinstance(meta, dict) else None
            if version in MODERN_PROTOCOL_VERSIONS:
                headers = {MCP_PROTOCOL_VERSION_HEADER: str(version), MCP_METHOD_HEADER: message.method}
                name_key = NAME_BEARING_METHODS.get(message.method)
                if name_key is not None and isinstance(params.get(name_key), str):
                    headers[MCP_NAME_HEADER] = encode_header_value(params[name_key])
                return headers
        return {MCP_PROTOCOL_VERSION_HEADER: self.version} if self.version else None

    def incoming(self, message: Any) -> None:
        if isinstance(message, JSONRPCResponse) and message.id in self.initialize_ids:
            self.initialize_ids.discard(message.id)
            version = message.result.get("protocolVersion")
            if isinstance(version, str):
                self.version = version


async def pump(shared: Shared) -> None:
    """Relay stdin/stdout to the shared server until the client closes stdin."""
    headers = {"Authorization": f"Bearer {shared.token}"} if shared.token else {}
    # read=None: the GET stream may stay quiet for hours; the client's own timeouts bound a request.
    timeout = httpx2.Timeout(30.0, read=None)
    wire = Headers()
    gone = anyio.Event()
    relay = _Relay(shared.url, gone)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout, transport=relay, trust_env=False) as client,
        streamable_http_client(shared.url, http_client=client) as (http_read, http_write),
        stdio_server() as (stdio_read, stdio_write),
        anyio.create_task_group() as tg,
    ):

        async def upstream() -> None:
            async for item in stdio_read:
                if isinstance(item, Exception):
                    log.warning("not a JSON-RPC message on stdin: %s", item)
                    continue
                meta = ClientMessageMetadata(headers=wire.outgoing(item.message))
                await http_write.send(SessionMessage(item.message, metadata=meta))
            tg.cancel_scope.cancel()  # the client has gone

        async def downstream() -> None:
            async for item in http_read:
                if isinstance(item, Exception):
                    log.warning("from the shared server: %s", item)
                    continue
                wire.incoming(item.message)
                await stdio_write.send(SessionMessage(item.message))
                if gone.is_set():
                    break
            tg.cancel_scope.cancel()  # the shared server has gone: exit, so that the harness sees it

        tg.start_soon(upstream)
        tg.start_soon(downstream)


def run(shared: Shared) -> None:
    log.info("attached to the shared somna server at %s (pid %d)", shared.url, shared.pid)
    anyio.run(pump, shared)
