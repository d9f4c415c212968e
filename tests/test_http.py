"""The shared server: `somna serve --http` with real SDK streamable-HTTP clients, its guards, and attach.

Every server here binds 127.0.0.1 on a free port; "non-loopback" is tested on the refusal path only.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from conftest import call, mcp_client, somna
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation

from somna import history
from somna.attach import HttpConfigError
from somna.transport import MAX_BODY, allowed_origins, check_bind, is_loopback, origin_allowed

pytestmark = pytest.mark.anyio

TOKEN = "t0k-" + "x7Qp2LmZ9vR4sW8n" * 2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    url: str
    info: dict[str, Any]
    log: Path
    token: str  # $SOMNA_HTTP_TOKEN, or the token file the server made at its first start


@contextmanager
def http_server(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Running]:
    """A real `somna serve --http` process on a free loopback port; ready once it has written http.json."""
    log = home.parent / f"http-server-{time.monotonic_ns()}.log"
    info_file = home / ".somna" / "http.json"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "somna", "serve", "--http", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "SOMNA_LOG_LEVEL": "INFO", **(env or {})},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the server exited: {log.read_text(encoding='utf-8')}")
            try:
                info = json.loads(info_file.read_text(encoding="utf-8"))
                if info["pid"] == proc.pid:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.05)
        token = (env or {}).get("SOMNA_HTTP_TOKEN") or (home / ".somna" / "http-token").read_text().strip()
        yield Running(proc, info["port"], info["url"], info, log, token)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not info_file.exists(), "the server left http.json behind"


@asynccontextmanager
async def http_session(
    url: str, *, token: str | None = None, name: str = "http-client"
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0)) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write, client_info=Implementation(name=name, version="1.0")) as session,
    ):
        await session.initialize()
        yield session


def status(
    port: int,
    method: str = "POST",
    path: str = "/mcp",
    body: bytes = b"{}",
    headers: dict[str, str] | None = None,
) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            method,
            path,
            body=body if method == "POST" else None,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                **(headers or {}),
            },
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


INIT = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        },
    }
).encode()


async def test_ten_concurrent_clients_write_and_search_through_one_server(somna_env: Path) -> None:
    topics = ["kafka", "redis", "nginx", "postgres", "celery", "grafana", "vault", "consul", "envoy", "minio"]
    with http_server(somna_env) as server:

        async def client(i: int, found: dict[int, list[str]]) -> None:
            async with http_session(server.url, token=server.token, name=f"agent-{i}") as s:
                topic = topics[i]
                mine = await call(
                    s,
                    "write",
                    content=f"The {topic} service of team {i} listens on port "
                    f"{9000 + i}; restart it with `systemctl restart {topic}`.",
                    type="fact",
                    tags=[topic],
                    force=True,
                )
                await call(
                    s,
                    "write",
                    content=f"Lesson from agent {i}: {topic} needs its config reloaded after "
                    f"every deploy, or it keeps serving stale routes.",
                    type="lesson",
                    force=True,
                )
                hits = (await call(s, "search", query=f"{topic} port restart"))["hits"]
                assert hits and hits[0]["id"] == mine["id"], (topic, hits)
                found[i] = [h["id"] for h in hits]

        found: dict[int, list[str]] = {}
        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(client, i, found)

        async with http_session(
            server.url, token=server.token, name="checker"
        ) as s:  # everyone sees everyone's writes
            for topic in topics:
                hits = (await call(s, "search", query=f"{topic} service port"))["hits"]
                assert any(topic in h["title"].lower() or topic in h["snippet"].lower() for h in hits), topic
        assert server.proc.poll() is None

    assert len(found) == 10
    assert len(list((somna_env / "memory").glob("*.md"))) == 20
    authors = history.git(somna_env, "log", "--format=%an").split()
    assert {f"agent-{i}" for i in range(10)} <= set(authors)


def test_a_non_loopback_bind_without_a_token_refuses_to_start(somna_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOMNA_HTTP_TOKEN"}
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        done = subprocess.run(
            [sys.executable, "-m", "somna", "serve", "--http", "--host", host, "--port", "0"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert "refusing to serve" in done.stderr and "SOMNA_HTTP_TOKEN" in done.stderr
    assert not (somna_env / ".somna" / "http.json").exists()


def test_the_bind_rule_and_the_origin_rule() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "", "192.168.1.5", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(HttpConfigError, match="without a bearer token"):
            check_bind(host, None)
        check_bind(host, "a-token")
    allowed = allowed_origins(
        ["https://app.example.com", "http://dev.test:*"], {"SOMNA_HTTP_ORIGINS": "http://a.b"}
    )
    for origin in (
        None,
        "http://localhost:5173",
        "http://127.0.0.1",
        "https://[::1]:8443",
        "https://app.example.com",
        "http://dev.test:3000",
        "http://a.b",
    ):
        assert origin_allowed(origin, allowed), origin
    for origin in (
        "http://evil.example",
        "null",
        "http://localhost.evil.example",
        "http://localhost:80x",
        "https://app.example.com:444",
        "http://127.0.0.1.nip.io",
    ):
        assert not origin_allowed(origin, allowed), origin


async def test_with_a_token_requests_without_it_or_with_a_wrong_one_get_401(somna_env: Path) -> None:
    with http_server(somna_env, env={"SOMNA_HTTP_TOKEN": TOKEN}) as server:
        assert server.info["token"] is True
        assert status(server.port, body=INIT) == 401
        assert status(server.port, body=INIT, headers={"Authorization": "Bearer wrong"}) == 401
        assert status(server.port, body=INIT, headers={"Authorization": f"Bearer {TOKEN}x"}) == 401
        assert status(server.port, body=INIT, headers={"Authorization": f"Basic {TOKEN}"}) == 401
        assert status(server.port, body=INIT, headers={"Authorization": TOKEN}) == 401
        assert status(server.port, "GET") == 401
        assert status(server.port, body=INIT, headers={"Authorization": f"Bearer {TOKEN}"}) == 200
        async with http_session(server.url, token=TOKEN, name="with-token") as s:
            assert (await call(s, "write", content="Tokens travel in the Authorization header."))["id"]
        with pytest.raises(Exception):  # noqa: B017  (the SDK's error for a 401 varies by version)
            with anyio.fail_after(30):
                async with http_session(server.url, token="wrong"):
                    pass


def test_on_loopback_too_the_token_is_made_at_the_first_start_and_required(somna_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOMNA_HTTP_TOKEN"}
    token_file = somna_env / ".somna" / "http-token"
    assert not token_file.exists()
    with http_server(somna_env, env=env) as server:
        assert server.info["token"] is True and server.info["host"] == "127.0.0.1"
        assert token_file.stat().st_mode & 0o777 == 0o600 and len(server.token) >= 40
        before = history.git(somna_env, "log", "--format=%H")
        write = json.dumps(
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
             "params": {"name": "write", "arguments": {"content": "Written without a token."}}}
        ).encode()  # fmt: skip
        assert status(server.port, body=INIT) == 401
        assert status(server.port, body=write) == 401
        assert status(server.port, body=write, headers={"Authorization": "Bearer "}) == 401
        assert status(server.port, body=INIT, headers={"Authorization": f"Bearer {server.token}"}) == 200
        assert "bearer token required" in server.log.read_text(encoding="utf-8")
        assert "no token" not in server.log.read_text(encoding="utf-8")
    assert history.git(somna_env, "log", "--format=%H") == before  # nothing changed
    assert not list((somna_env / "memory").glob("*.md"))
    first = server.token
    with http_server(somna_env, env=env) as again:  # the same token on the next start
        assert again.token == first


def test_a_bad_origin_gets_403_and_an_oversized_body_413(somna_env: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with http_server(
        somna_env, "--allow-origin", "https://app.example.com", env={"SOMNA_HTTP_TOKEN": TOKEN}
    ) as server:
        assert status(server.port, body=INIT, headers={**auth, "Origin": "http://evil.example"}) == 403
        assert status(server.port, body=INIT, headers={"Origin": "http://evil.example"}) == 403
        assert status(server.port, "GET", "/health", headers={"Origin": "http://evil.example"}) == 403
        assert status(server.port, body=INIT, headers={**auth, "Origin": "http://localhost:5173"}) == 200
        assert status(server.port, body=INIT, headers={**auth, "Origin": "https://app.example.com"}) == 200
        assert (
            status(server.port, body=INIT, headers={**auth, "Host": "evil.example"}) == 421
        )  # DNS rebinding

        big = (
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "write", "arguments": '
            b'{"content": "' + b"y" * (MAX_BODY + 10) + b'"}}}'
        )
        assert status(server.port, body=big, headers=auth) == 413
        assert status(server.port, body=INIT, headers=auth) == 200  # and it still serves


async def test_a_stdio_serve_attaches_to_the_running_server_and_writes_land_in_its_store(
    somna_env: Path, tmp_path: Path
) -> None:
    with http_server(somna_env) as server:  # no setup: the token is made at the first start
        assert (
            server.info["token"] is True
            and (somna_env / ".somna" / "http-token").stat().st_mode & 0o777 == 0o600
        )
        errlog = tmp_path / "stdio.log"
        with open(errlog, "w", encoding="utf-8") as err:
            async with mcp_client(name="attached-agent", env={"SOMNA_LOG_LEVEL": "INFO"}, errlog=err) as s:
                tools = {t.name for t in (await s.list_tools()).tools}
                assert {"search", "write", "propose_edit"} <= tools
                mid = (
                    await call(
                        s, "write", content="Attached sessions share the HTTP server's store.", type="fact"
                    )
                )["id"]
                assert (await call(s, "search", query="attached sessions share"))["hits"][0]["id"] == mid
        text = errlog.read_text(encoding="utf-8")
        assert f"attached to the shared somna server at {server.url} (pid {server.proc.pid})" in text
        assert "handshake answered" not in text  # it never built a server of its own
        async with http_session(
            server.url, token=(somna_env / ".somna" / "http-token").read_text().strip()
        ) as h:
            assert (await call(h, "read", id=mid))["content"].startswith("Attached sessions")
        deadline = time.monotonic() + 10  # the shared server commits its writes in groups, within 0.2 s
        while history.git(somna_env, "log", "-1", "--format=%an").strip() != "attached-agent":
            assert time.monotonic() < deadline, history.git(somna_env, "log", "-3", "--format=%an|%s")
            time.sleep(0.1)

        with open(errlog, "w", encoding="utf-8") as err:  # SOMNA_ATTACH=0: a server of its own
            async with mcp_client(env={"SOMNA_LOG_LEVEL": "INFO", "SOMNA_ATTACH": "0"}, errlog=err) as s:
                assert (await call(s, "search", query="attached sessions share"))["hits"][0]["id"] == mid
        assert "attached to" not in errlog.read_text(encoding="utf-8")


async def test_a_stale_announcement_is_ignored(somna_env: Path, tmp_path: Path) -> None:
    assert somna("init").returncode == 0
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    info = {
        "pid": int(gone.stdout),
        "url": "http://127.0.0.1:9/mcp",
        "connect_host": "127.0.0.1",
        "port": 9,
        "token": False,
        "stores": {"user": str(somna_env.resolve())},
    }
    (somna_env / ".somna" / "http.json").write_text(json.dumps(info), encoding="utf-8")
    errlog = tmp_path / "stdio.log"
    with open(errlog, "w", encoding="utf-8") as err:
        async with mcp_client(env={"SOMNA_LOG_LEVEL": "INFO"}, errlog=err) as s:
            assert (await call(s, "write", content="Served on its own when the shared server is gone."))["id"]
    assert "is gone; serving on our own" in errlog.read_text(encoding="utf-8")


async def test_an_attached_session_speaks_the_2026_protocol_too(somna_env: Path, tmp_path: Path) -> None:
    """Recent clients open with `server/discover` and never send initialize: the relay adds their headers."""
    with http_server(somna_env) as server:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "somna", "serve"],
            env={**os.environ, "SOMNA_LOG_LEVEL": "INFO"},
        )
        with open(tmp_path / "stdio.log", "w", encoding="utf-8") as err:
            async with (
                stdio_client(params, errlog=err) as (read, write),
                ClientSession(
                    read, write, client_info=Implementation(name="modern-agent", version="1.0")
                ) as s,
            ):
                await s.discover()
                assert "write" in {t.name for t in (await s.list_tools()).tools}
                mid = (await call(s, "write", content="The 2026 envelope goes through the relay."))["id"]
                assert (await call(s, "read", id=mid))["content"].startswith("The 2026 envelope")
        assert "attached to the shared somna server" in (tmp_path / "stdio.log").read_text(encoding="utf-8")
        assert (somna_env / "memory" / f"{mid}.md").is_file() and server.proc.poll() is None


async def test_when_the_shared_server_stops_an_attached_session_says_so_at_once(somna_env: Path) -> None:
    with http_server(somna_env) as server:
        async with mcp_client(name="left-behind") as s:
            await call(s, "search", query="anything")
            server.proc.terminate()
            server.proc.wait(timeout=30)
            with anyio.fail_after(20), pytest.raises(MCPError, match="is not answering"):
                await s.call_tool("search", {"query": "anything"})


def test_the_relay_speaks_the_sdks_wire_without_importing_it() -> None:
    """The attached relay keeps its own copy of the SDK's header names and rules, to stay small: they match;
    and the way to it (`cli.py`, `proxy.py`) imports none of the SDK, asyncio, ssl, hashes, SQLite or YAML."""
    from mcp.shared.inbound import (
        MCP_METHOD_HEADER,
        MCP_NAME_HEADER,
        MCP_PROTOCOL_VERSION_HEADER,
        NAME_BEARING_METHODS,
        encode_header_value,
    )
    from mcp_types import INTERNAL_ERROR, PROTOCOL_VERSION_META_KEY
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    from somna import proxy

    assert (proxy.METHOD_HEADER, proxy.NAME_HEADER, proxy.PROTOCOL_VERSION_HEADER) == (
        MCP_METHOD_HEADER.lower(),
        MCP_NAME_HEADER.lower(),
        MCP_PROTOCOL_VERSION_HEADER.lower(),
    )
    assert proxy.NAME_BEARING_METHODS == dict(NAME_BEARING_METHODS)
    assert proxy.PROTOCOL_VERSION_META_KEY == PROTOCOL_VERSION_META_KEY
    assert tuple(proxy.MODERN_PROTOCOL_VERSIONS) == tuple(MODERN_PROTOCOL_VERSIONS)
    assert proxy.INTERNAL_ERROR == INTERNAL_ERROR
    for value in ["search", " edge ", "naïve", "=?base64?x?=", "tab\there", ""]:
        assert proxy.encode_header_value(value) == encode_header_value(value)
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, somna.cli, somna.proxy; "
            "print(sorted(m for m in ('pydantic', 'mcp', 'mcp_types', 'numpy', 'torch', 'asyncio', 'ssl', "
            "'hashlib', 'sqlite3', 'yaml', 'somna.store', 'somna.commands') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]"


async def test_an_attached_session_hears_list_changed_through_the_relay(
    somna_env: Path, tmp_path: Path
) -> None:
    """What the shared server sends unasked (its GET stream) reaches an attached stdio client."""
    import mcp_types

    with http_server(somna_env) as server:
        inbox: list[object] = []

        async def keep(message: object) -> None:
            inbox.append(message)

        params = StdioServerParameters(
            command=sys.executable, args=["-m", "somna", "serve"], env=dict(os.environ)
        )
        with open(tmp_path / "stdio.log", "w", encoding="utf-8") as err:
            async with (
                stdio_client(params, errlog=err) as (read, write),
                ClientSession(
                    read,
                    write,
                    client_info=Implementation(name="listener", version="1"),
                    message_handler=keep,
                ) as s,
            ):
                await s.initialize()
                await s.list_tools()
                await anyio.sleep(0.5)  # the relay opens the GET stream after `initialized`
                skill = somna_env / "skills" / "rotate-keys"
                skill.mkdir(parents=True)
                (skill / "SKILL.md").write_text(
                    "---\nname: rotate-keys\ndescription: Rotate the API keys. Use when a key leaked.\n---\n"
                    "# rotate-keys\n\nSteps.\n",
                    encoding="utf-8",
                )
                with anyio.fail_after(10):
                    while not any(isinstance(m, mcp_types.ToolListChangedNotification) for m in inbox):
                        await anyio.sleep(0.05)
        assert server.proc.poll() is None


def test_the_relay_aborts_a_cancelled_2026_request_and_posts_an_older_cancellation() -> None:
    """At 2026 a `notifications/cancelled` aborts the request's POST (the server sees its connection close)
    and is not posted; an older client's cancellation is posted like any notification. A stand-in server
    on 127.0.0.1 answers `fast` at once, chunked as SSE, and holds `slow` until its client goes."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from somna.proxy import MODERN_PROTOCOL_VERSIONS, PROTOCOL_VERSION_META_KEY

    seen: list[str] = []
    aborted = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            message = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(message.get("method", "") + ":" + str((message.get("params") or {}).get("name", "")))
            if "id" not in message:
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if message["params"]["name"] == "slow":
                self.connection.settimeout(10)
                if self.rfile.read(1) == b"":  # blocks until the relay closes the connection
                    aborted.set()
                return
            event = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": {"ok": message["id"]}})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b": priming\n\n", f"event: message\ndata: {event}\n\n".encode()):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/mcp"
    modern = {PROTOCOL_VERSION_META_KEY: MODERN_PROTOCOL_VERSIONS[0]}
    script = (
        f"from somna.attach import Shared; from somna.proxy import Relay; "
        f"Relay(Shared({url!r}, None, 0)).run()"
    )
    try:
        for meta, cancel_posted in ((modern, False), ({}, True)):
            seen.clear()
            aborted.clear()
            relay = subprocess.Popen(
                [sys.executable, "-c", script],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert relay.stdin is not None and relay.stdout is not None

            def send(message: dict[str, Any], relay: subprocess.Popen[bytes] = relay) -> None:
                assert relay.stdin is not None
                relay.stdin.write(json.dumps(message).encode() + b"\n")
                relay.stdin.flush()

            send(
                {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "slow", "_meta": meta}}
            )
            send(
                {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "fast", "_meta": meta}}
            )
            assert json.loads(relay.stdout.readline()) == {"jsonrpc": "2.0", "id": 2, "result": {"ok": 2}}
            deadline = time.monotonic() + 10
            while "tools/call:slow" not in seen:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
            if not cancel_posted:
                assert aborted.wait(10)  # the POST of request 1 was closed
            else:
                while "notifications/cancelled:" not in seen:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            relay.stdin.close()
            relay.wait(timeout=20)
            rest = relay.stdout.read()
            relay.stdout.close()
            assert relay.stderr is not None and not relay.stderr.close()
            assert rest == b"", rest  # nothing answered for the cancelled request
            assert ("notifications/cancelled:" in seen) is cancel_posted
    finally:
        server.shutdown()
        server.server_close()
