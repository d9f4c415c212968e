"""A plain HTTP/1.1 client over one socket per exchange, for the attached relay and the health probe.

The relay of `somna serve` to a shared server runs once per harness session, so its memory counts five
times over with five sessions: it uses the standard library's sockets, not http.client (which imports
ssl) nor an async client. Loopback or a LAN address, plain http: the shared server speaks nothing else.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from io import BufferedReader

MAX_HEADERS = 64 * 1024


class HttpError(OSError):
    """The peer answered something that is not HTTP/1.1, or closed the connection midway."""


class Response:
    """Status, headers (names in lower case) and a body read as it arrives: whole, or line by line."""

    def __init__(self, sock: socket.socket, reader: BufferedReader) -> None:
        self.sock, self.reader = sock, reader
        line = reader.readline(MAX_HEADERS)
        parts = line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP answer: {line[:80]!r}")
        self.status = int(parts[1])
        self.headers: dict[str, str] = {}
        size = len(line)
        while True:
            line = reader.readline(MAX_HEADERS)
            size += len(line)
            if not line or size > MAX_HEADERS:
                raise HttpError("the answer's headers were cut off or too long")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def chunks(self) -> Iterator[bytes]:
        """The body as it comes: chunked, sized by Content-Length, or up to the end of the connection."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                size_line = self.reader.readline(1024)
                if not size_line:
                    raise HttpError("the connection closed inside a chunked body")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.reader.readline(MAX_HEADERS) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                data = self.reader.read(size)
                if len(data) < size:
                    raise HttpError("the connection closed inside a chunk")
                self.reader.readline(16)  # the CRLF after the chunk
                yield data
        elif "content-length" in self.headers:
            left = int(self.headers["content-length"])
            while left > 0:
                data = self.reader.read1(min(left, 65536))
                if not data:
                    raise HttpError("the connection closed inside the body")
                left -= len(data)
                yield data
        else:
            while data := self.reader.read1(65536):
                yield data

    def read(self, limit: int = 64 * 1024 * 1024) -> bytes:
        out = bytearray()
        for data in self.chunks():
            out += data
            if len(out) > limit:
                raise HttpError(f"the answer is over {limit:,} bytes")
        return bytes(out)

    def lines(self) -> Iterator[str]:
        """The body's lines (UTF-8, without their line ends), as each one completes."""
        pending = b""
        for data in self.chunks():
            pending += data
            *done, pending = pending.split(b"\n")
            for line in done:
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", errors="replace")


class Exchange:
    """One request and its answer on a connection of their own (closed after: `Connection: close`).
    `close()` from another thread aborts it: a read then fails with OSError."""

    def __init__(self, host: str, port: int, timeout: float | None) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        self.closed = False

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
        read_timeout: float | None = None,
    ) -> Response:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: close"]
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        self.sock.settimeout(read_timeout)
        return Response(self.sock, self.reader)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
