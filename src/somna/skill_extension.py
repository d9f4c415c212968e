"""The MCP Skills extension (SEP-2640, `io.modelcontextprotocol/skills`), server side: a thin edge over
somna.skill_manifest, for hosts that load a server's skills like skills on their own disk.

Through the SDK's own extension point (`mcp.server.extension.Extension`, passed to `MCPServer`): the
capability `extensions["io.modelcontextprotocol/skills"] = {"directoryRead": true}` and three methods,
`skills/list` (every valid skill of every store and mounted folder, 50 entries a page, an opaque cursor),
`skills/get` (one entry by its SKILL.md URI) and `resources/directory/read`. Files are read with the
standard `resources/read` through a `skill://{+path}` resource template; the template's own checks are
off because somna.skill_manifest confines every path itself and says why it refuses one. Unknown skills and
files, escapes and malformed cursors are JSON-RPC -32602 (Invalid params), as the extension specifies.

Change: the extension defines no notification of its own (the working group declined
`notifications/skills/list_changed`; skill files are resources), so a host hears the base protocol's
`notifications/resources/list_changed` (and 2026-era listeners `ResourcesListChanged`), which skill_tools
sends when a skill folder is added, edited or removed. Once a client speaks the extension, the watcher
also compares every skill file's stat (`poll`), so an edited reference file is heard too.

Tokens once: a client that declares the extension at `initialize` (or on a 2026-era request) gets
instructions without the skills catalog, and a `load_skill` without the enum of names, since its host
lists the skills itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resources import ResourceSecurity
from mcp.shared.exceptions import MCPError
from mcp_types import CLIENT_CAPABILITIES_META_KEY, RequestParams
from mcp_types.jsonrpc import INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from somna.errors import SomnaError
from somna.skill_manifest import SCHEME, Manifests, mime_type
from somna.skills import Catalog

log = logging.getLogger("somna.skills")
IDENTIFIER = "io.modelcontextprotocol/skills"
PAGE = 50  # skills per skills/list page; an entry (with all its files) is never split
DIRECTORY_PAGE = 200
CURSOR = "after:"
DEEP_POLL_SECONDS = 1.0  # every file of every skill stat-ed at most this often (more apart when costly)
POINTER = (
    "\nSkills: your host lists somna's skills (MCP Skills extension); load the one that fits a task "
    "before doing it.\n"
)


class ListParams(RequestParams):
    cursor: str | None = None


class GetParams(RequestParams):
    uri: str


class DirectoryParams(RequestParams):
    uri: str
    cursor: str | None = None


def lean_instructions(full: str, skills: tuple[str, str]) -> str:
    """The instructions without the skills catalog (its line after the guide and its list at the end)."""
    line, listing = skills
    if listing and full.endswith(listing):
        full = full[: len(full) - len(listing)]
    if line and line in full:
        full = full.replace(line, POINTER if listing or line.strip() else "", 1)
    return full


def _invalid(message: str, uri: str | None = None) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=message, data={"uri": uri} if uri else None)


def declares(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Did the client declare the Skills extension: at initialize, in a 2026-era envelope, or before?"""
    params = ctx.params if isinstance(ctx.params, Mapping) else {}
    found: list[Any] = [params.get("capabilities")]
    meta = params.get("_meta")
    if isinstance(meta, Mapping):
        found.append(meta.get(CLIENT_CAPABILITIES_META_KEY))
    for caps in found:
        if isinstance(caps, Mapping) and isinstance(caps.get("extensions"), Mapping):
            if IDENTIFIER in caps["extensions"]:
                return True
    known = ctx.session.client_capabilities
    return bool(known is not None and known.extensions and IDENTIFIER in known.extensions)


class SkillsExtension(Extension):
    """SEP-2640 on a catalog. `refresh` (set by the server to skill_tools' refresh, which also notifies)
    brings the catalog up to date before each answer, so a skill accepted a moment ago is listed."""

    identifier = IDENTIFIER

    def __init__(self, catalog: Catalog, instructions: tuple[str, str] | None = None) -> None:
        self.manifests = Manifests(catalog)
        self.catalog = catalog
        self.instructions = instructions  # (with the catalog, without it)
        self.active = False  # a client has spoken the extension: poll every skill file for changes
        self._signature: tuple[Any, ...] | None = None
        self._next_poll = 0.0
        self.refresh: Callable[[], Awaitable[Any]] = self._refresh_catalog

    async def _refresh_catalog(self) -> None:
        await anyio.to_thread.run_sync(self.catalog.refresh)

    def settings(self) -> dict[str, Any]:
        return {"directoryRead": True}

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("skills/list", ListParams, self._list),
            MethodBinding("skills/get", GetParams, self._get),
            MethodBinding("resources/directory/read", DirectoryParams, self._directory),
        )

    def install(self, server: MCPServer) -> None:
        """What the Extension class has no slot for: the `skill://` template and the middleware."""
        manifests = self.manifests

        @server.resource(
            SCHEME + "{+path}",
            name="skill file",
            description="a file of a skill (Skills extension): skill://<name>/SKILL.md and its other files",
            security=ResourceSecurity(exempt_params={"path"}),  # confined by skill_manifest, with reasons
        )
        async def skill_file(path: str, ctx: Context) -> str | bytes:
            raw = (ctx.request_context.params or {}).get("uri")
            uri = raw if isinstance(raw, str) else SCHEME + quote(path, safe="/")
            await self._touch()
            data, _ = await self._call(manifests.read, uri, uri=uri)
            if b"\x00" not in data:
                try:
                    return data.decode("utf-8")  # the same bytes once the host encodes it again
                except UnicodeDecodeError:
                    pass
            return data

        server.middleware.append(self._middleware)

    # -- the methods ------------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., Any], *args: Any, uri: str | None = None) -> Any:
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        except SomnaError as exc:
            raise _invalid(str(exc), uri) from None
        except OSError as exc:  # removed or unreadable between the listing and the read
            raise _invalid(f"{uri or 'skill'}: cannot be read now ({exc.strerror or exc})", uri) from None

    async def _touch(self) -> None:
        self.active = True
        await self.refresh()

    async def _list(self, ctx: ServerRequestContext[Any, Any], params: ListParams) -> dict[str, Any]:
        after = None
        if params.cursor is not None:
            if not params.cursor.startswith(CURSOR):
                raise _invalid("invalid cursor: pass back the nextCursor of the previous page")
            after = params.cursor[len(CURSOR) :]
        await self._touch()
        skills, last = await self._call(self.manifests.entries, after, PAGE)
        out: dict[str, Any] = {"skills": skills}
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:  # SEP-2549's list-caching attributes
            out |= {"ttlMs": 0, "cacheScope": "private"}  # stale at once: a change is notified instead
        if last is not None:
            out["nextCursor"] = CURSOR + last
        return out

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: GetParams) -> dict[str, Any]:
        await self._touch()
        return {"skill": await self._call(self.manifests.entry, params.uri, uri=params.uri)}

    async def _directory(
        self, ctx: ServerRequestContext[Any, Any], params: DirectoryParams
    ) -> dict[str, Any]:
        start = 0
        if params.cursor is not None:
            if not params.cursor.isdigit():
                raise _invalid("invalid cursor: pass back the nextCursor of the previous page", params.uri)
            start = int(params.cursor)
        await self._touch()
        children = await self._call(self.manifests.directory, params.uri, uri=params.uri)
        out: dict[str, Any] = {"resources": children[start : start + DIRECTORY_PAGE]}
        if start + DIRECTORY_PAGE < len(children):
            out["nextCursor"] = str(start + DIRECTORY_PAGE)
        return out

    # -- change and the handshake -----------------------------------------------------------------
    def poll(self) -> bool:
        """For the watcher (on a worker thread): True when any skill file changed since the last poll.
        Only once a client has spoken the extension: until then nobody holds digests that could go stale."""
        if not self.active or time.monotonic() < self._next_poll:
            return False
        start = time.monotonic()
        signature = self.manifests.signature()
        changed = self._signature is not None and signature != self._signature
        self._signature = signature
        # A stat of every file (~75 ms at 1,000 skills on a loaded machine): at most ~5% of a core.
        self._next_poll = time.monotonic() + max(DEEP_POLL_SECONDS, 20 * (time.monotonic() - start))
        return changed

    async def _middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        if ctx.method in ("initialize", "server/discover"):
            caps = result.get("capabilities")
            if isinstance(caps, dict):  # the SDK sieves `extensions` out of a 2025-era answer: it goes back
                caps.setdefault("extensions", {})[IDENTIFIER] = self.settings()
            if declares(ctx):
                self.active = True
                if self.instructions is not None and "instructions" in result:
                    result["instructions"] = self.instructions[1]  # the host lists the skills: tokens once
        elif ctx.method == "tools/list" and declares(ctx):
            for tool in result.get("tools") or []:  # load_skill's enum is the catalog's names once more
                if isinstance(tool, dict) and tool.get("name") == "load_skill":
                    name = ((tool.get("inputSchema") or {}).get("properties") or {}).get("name")
                    if isinstance(name, dict) and name.pop("enum", None) is not None:
                        name["description"] = "a skill name from your host's list of somna's skills"
        elif ctx.method == "resources/read":
            for item in result.get("contents") or []:
                uri = item.get("uri") if isinstance(item, dict) else None
                if isinstance(uri, str) and uri.startswith(SCHEME):
                    item["mimeType"] = mime_type(uri.rsplit("/", 1)[-1])
        return result
