"""The shared HTTP server's traces on disk, and how a stdio `somna serve` finds it. Standard library only.

A running `somna serve --http` writes ``.somna/http.json`` (pid, url, the stores it serves) in the first
store it serves, and removes it when it stops. `find_shared` is what a stdio `somna serve` asks before
opening anything: a server of exactly the same stores whose pid is alive and whose /health answers with
that pid. The bearer token is ``SOMNA_HTTP_TOKEN``, or the file ``.somna/http-token`` (mode 0600) of the
user store (or of ``--store``), which both sides read: the server makes it at its first start (`ensure_token`),
so a token is required on loopback too, and the owner's relays and `somna ui` read it with no setup.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from somna import minihttp
from somna.config import Settings
from somna.errors import SomnaError

log = logging.getLogger("somna.attach")

TOKEN_ENV = "SOMNA_HTTP_TOKEN"
ATTACH_ENV = "SOMNA_ATTACH"
TOKEN_FILE = "http-token"
INFO_FILE = "http.json"
HEALTH_PATH = "/health"
MCP_PATH = "/mcp"


class HttpConfigError(SomnaError):
    """The HTTP server cannot start as configured (no token off loopback, a bad token file...)."""


@dataclass(frozen=True)
class Shared:
    """A running shared server this process may attach to."""

    url: str
    token: str | None
    pid: int


def store_paths(settings: Settings) -> dict[str, str]:
    """scope -> resolved path of the stores a server with these settings opens (the attach key)."""
    return {scope: str(Path(p).expanduser().resolve()) for scope, p in settings.store_paths().items()}


def info_path(settings: Settings) -> Path:
    return Path(next(iter(store_paths(settings).values()))) / ".somna" / INFO_FILE


def token_path(settings: Settings) -> Path:
    home = settings.store if settings.store is not None else settings.user_store
    return Path(home).expanduser() / ".somna" / TOKEN_FILE


def load_token(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The bearer token: $SOMNA_HTTP_TOKEN, else the token file; None when neither is set."""
    value = environ.get(TOKEN_ENV, "").strip()
    if value:
        return value
    path = token_path(settings)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise HttpConfigError(f"{path} can be read by other users; `chmod 600 {path}` (or make a new one)")
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise HttpConfigError(f"{path} is empty; delete it or put a token in it")
    return token


def new_token(settings: Settings) -> Path:
    """Create the token file (0600) with a fresh random token; an existing one is kept."""
    path = token_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    import secrets  # here: it loads OpenSSL's hashes (~5 MB), which an attached relay does not need

    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path


def ensure_token(settings: Settings, environ: Mapping[str, str]) -> str:
    """The bearer token, made (0600, in the store's .somna/) at the first start when there is none yet."""
    token = load_token(settings, environ)
    if token is None:
        new_token(settings)
        token = load_token(settings, environ)
    assert token is not None
    return token


def write_info(settings: Settings, info: dict[str, Any]) -> Path:
    """Announce a running server (atomically, 0600); `remove_info` takes it back."""
    path = info_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{INFO_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    os.replace(tmp, path)
    return path


def remove_info(settings: Settings, pid: int) -> None:
    """Remove http.json if it is still this server's (another may have taken over since)."""
    path = info_path(settings)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the pid
        return False
    return True


def health(host: str, port: int, token: str | None = None, timeout: float = 1.0) -> dict[str, Any] | None:
    """GET /health of a somna HTTP server, or None when nothing (or something else) answers.

    With a token, the answer's "authorized" says whether the server accepts it."""
    try:
        with minihttp.Exchange(host, port, timeout) as conn:
            resp = conn.send(
                "GET",
                HEALTH_PATH,
                {"Authorization": f"Bearer {token}"} if token else {},
                read_timeout=timeout,
            )
            if resp.status != 200:
                return None
            data = json.loads(resp.read(limit=4096))
        return data if isinstance(data, dict) and data.get("server") == "somna" else None
    except (OSError, ValueError):
        return None


def wanted(environ: Mapping[str, str]) -> bool:
    return environ.get(ATTACH_ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def find_shared(settings: Settings, environ: Mapping[str, str]) -> Shared | None:
    """The shared server to attach to, or None (then this process serves on its own)."""
    path = info_path(settings)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return None
    try:
        pid, host, port, url = (
            int(info["pid"]),
            str(info["connect_host"]),
            int(info["port"]),
            str(info["url"]),
        )
    except (KeyError, TypeError, ValueError):
        log.warning("ignoring %s: not written by this somna", path)
        return None
    if info.get("stores") != store_paths(settings):
        log.info("the shared server (pid %d) serves other stores; serving on our own", pid)
        return None
    if not _alive(pid):
        log.info("the shared server of %s (pid %d) is gone; serving on our own", path, pid)
        return None
    try:
        token = load_token(settings, environ)
    except HttpConfigError as exc:
        log.warning("cannot attach to the shared server: %s", exc)
        return None
    answer = health(host, port, token)
    if answer is None or answer.get("pid") != pid:
        log.info("nothing answers as pid %d at %s:%d; serving on our own", pid, host, port)
        return None
    if not answer.get("authorized"):
        log.warning(
            "the shared server (pid %d) does not accept our token (%s or %s); serving on our own",
            pid,
            TOKEN_ENV,
            token_path(settings),
        )
        return None
    return Shared(url, token, pid)
