"""The MCP server: somna's tools, resources and prompts over the core API. Thin by design.

Nothing heavy happens before the handshake is answered: the stores open (SQLite, a stat of a few
files) and the instructions are composed from the core blocks; syncing the index with the files
and loading the embedding model start only once `initialize` (or `server/discover`) has been
answered.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resources import FunctionResource
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp_types import ToolAnnotations
from pydantic import Field

from somna import __version__, background
from somna.app import catalog_for, embedder_for, open_memory
from somna.config import Settings
from somna.context import compose_instructions
from somna.embeddings import LazyEmbedder
from somna.errors import Conflict, SomnaError
from somna.scopes import Memory
from somna.skill_extension import SkillsExtension, lean_instructions
from somna.skill_tools import SkillTools
from somna.store import Store

log = logging.getLogger("somna.server")
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: dict[str, LogLevel] = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "ERROR": "ERROR",
                                   "CRITICAL": "CRITICAL"}  # fmt: skip
RECENT_SEARCHES = 50
HEAVY = ("torch", "sentence_transformers", "transformers", "litellm", "numpy", "onnxruntime", "tokenizers")

Scope = Annotated[str | None, Field(description="project or user; default: all for search, first for write")]
Id = Annotated[str, Field(max_length=200, description="memory id from search/write, or block:<name>")]


@dataclass
class App:
    """What the lifespan holds: the open stores and the embedder warming in the background."""

    memory: Memory
    embedder: Any
    warm: threading.Event
    # this session's last searches (query, the ids it found): a hit marked helpful makes its query a probe
    searches: deque[tuple[str, list[str]]] = field(default_factory=lambda: deque(maxlen=RECENT_SEARCHES))

    def query_that_found(self, ref: str) -> str | None:
        return next((query for query, ids in reversed(self.searches) if ref in ids), None)


def _author(ctx: Context) -> str:
    try:
        params = ctx.request_context.session.client_params
        if params is not None and params.client_info.name:
            return str(params.client_info.name)
    except (AttributeError, ValueError):
        pass
    return "mcp-client"


def build_server(settings: Settings, *, eager: bool = False) -> MCPServer:
    """The MCP server; `eager` (for the shared HTTP server) syncs and loads the model now."""
    embedder = embedder_for(settings)
    memory = open_memory(settings, embedder)
    for store in memory.stores.values():
        store.group_commits()  # a write returns once on disk and indexed; git follows within journal.WINDOW
    catalog = catalog_for(memory, settings, embedder=embedder)
    skill_parts = catalog.instructions()
    instructions = compose_instructions(memory, settings.instructions_budget, skill_parts)
    extension = SkillsExtension(catalog, (instructions, lean_instructions(instructions, skill_parts)))
    warm = threading.Event()
    busy = threading.Lock()  # one core call at a time on the stores' shared connections
    if settings.daemon:  # one daemon per store, started once the handshake is answered: see background.py
        background.keep((store.layout for store in memory.stores.values()), after=warm)
    app = App(memory, embedder, warm)

    def warm_up() -> None:
        """After the handshake: catch up with edits made while somna was not running, load the model."""
        if warm.is_set():
            return
        warm.set()
        heavy = [m for m in HEAVY if m in sys.modules]
        log.info("handshake answered; heavy modules loaded before it: %s", heavy or "none")

        def run() -> None:
            with busy:
                memory.sync()
            if isinstance(embedder, LazyEmbedder) and embedder.wait():
                memory.backfill()  # on connections of its own: tools keep running meanwhile

        threading.Thread(target=run, name="somna-warm-up", daemon=True).start()

    async def after_handshake(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        result = await call_next(ctx)
        if not warm.is_set() and ctx.method in (
            "initialize",
            "server/discover",
            "notifications/initialized",
            "tools/list",
            "tools/call",
        ):
            # A short delay lets the answer reach the wire before the import of torch takes the GIL.
            threading.Timer(0.05, warm_up).start()
        return result

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[App]:
        try:
            async with skills.watching():
                yield app
        finally:
            memory.close()

    bus = InMemorySubscriptionBus()  # list_changed events for 2026-era clients' subscriptions/listen streams
    server = MCPServer(
        "somna",
        instructions=instructions,
        version=__version__,
        lifespan=lifespan,
        middleware=[after_handshake],
        subscriptions=bus,
        extensions=[extension],
        log_level=LOG_LEVELS.get(settings.log_level, "WARNING"),
    )
    limiter = anyio.CapacityLimiter(1)

    def locked(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with busy:
            return fn(*args, **kwargs)

    def block_text(store: Store, name: str) -> str:
        return str(locked(store.read, f"block:{name}")["content"])

    async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a core call on a worker thread, one at a time, and turn somna's errors into tool errors."""
        try:
            return await anyio.to_thread.run_sync(lambda: locked(fn, *args, **kwargs), limiter=limiter)
        except Conflict as exc:
            current = f"--- current version {exc.current_version} ---\n{exc.current_text}"
            raise ToolError(f"conflict: {exc}\n{current}") from None
        except SomnaError as exc:  # DuplicateFound among them: its message names the duplicate
            raise ToolError(str(exc)) from None

    ro = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=ro)
    async def search(
        query: Annotated[str, Field(max_length=2000, description="a few words: topic, error, tool, name")],
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=50)] = 8,
        type: Annotated[str | None, Field(max_length=30, description="fact, lesson, preference, ...")] = None,
        tags: Annotated[list[str] | None, Field(max_length=20)] = None,
        scope: Scope = None,
        include_archived: bool = False,
    ) -> dict[str, Any]:
        """Search memory by words and meaning. Returns compact hits (id, title, snippet); `read` for full text."""
        found = await call(
            app.memory.search,
            query,
            scope=scope,
            limit=limit,
            type=type,
            tags=tags,
            include_archived=include_archived,
        )
        app.searches.append((query, [h["id"] for h in found["hits"]]))
        return dict(found)

    @server.tool(annotations=ro)
    async def read(id: Id, ctx: Context, scope: Scope = None) -> dict[str, Any]:
        """Read one memory or block (block:<name>) in full, with its `version` for propose_edit."""
        store = await call(app.memory.locate, id, scope)
        return await call(store.read, id)

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    )
    async def write(
        content: Annotated[
            str, Field(max_length=100_000, description="one specific thing learned, with its why")
        ],
        ctx: Context,
        title: Annotated[str | None, Field(max_length=200)] = None,
        type: Annotated[
            str, Field(max_length=30, description="fact, lesson, preference, procedure, decision")
        ] = "note",
        tags: Annotated[list[str] | None, Field(max_length=20)] = None,
        scope: Scope = None,
        force: Annotated[bool, Field(description="write even if a near-duplicate exists")] = False,
    ) -> dict[str, Any]:
        """Create a memory. If a near-duplicate exists nothing is written and its id is returned in the error."""
        store = await call(app.memory.store, scope)
        return await call(
            store.write, content, title=title, type=type, tags=tags, author=_author(ctx), force=force
        )

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    )
    async def propose_edit(
        id: Id,
        op: Literal["str_replace", "append", "replace", "archive"],
        base_version: Annotated[str, Field(max_length=64, description="`version` from read")],
        ctx: Context,
        old: Annotated[str | None, Field(max_length=100_000, description="str_replace: exact text")] = None,
        new: Annotated[str | None, Field(max_length=100_000, description="str_replace: replacement")] = None,
        count: Annotated[int, Field(ge=1, le=1000, description="str_replace: expected matches")] = 1,
        text: Annotated[str | None, Field(max_length=100_000, description="append/replace: the text")] = None,
        reason: Annotated[str | None, Field(max_length=500)] = None,
        scope: Scope = None,
    ) -> dict[str, Any]:
        """Edit a memory or block based on the version you read; applied or queued for review by policy.
        A stale base_version fails with the current text."""
        store = await call(app.memory.locate, id, scope)
        return await call(
            store.edit,
            id,
            op,
            base_version,
            author=_author(ctx),
            old=old,
            new=new,
            count=count,
            text=text,
            reason=reason,
        )

    @server.tool(annotations=ro)
    async def history(
        id: Id,
        ctx: Context,
        limit: Annotated[int, Field(ge=1, le=100)] = 10,
        scope: Scope = None,
    ) -> dict[str, Any]:
        """Versions of a memory or block (commit, version, author, date, why) and the diff of the last change."""
        store = await call(app.memory.locate, id, scope)
        return await call(store.history, id, limit=limit)

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
    )
    async def revert(
        id: Id,
        ctx: Context,
        to: Annotated[
            str | None, Field(max_length=64, description="commit or version; default: previous")
        ] = None,
        scope: Scope = None,
    ) -> dict[str, Any]:
        """Restore a memory or block to an earlier version, as a new version (history keeps everything)."""
        store = await call(app.memory.locate, id, scope)
        return await call(store.revert, id, to=to, author=_author(ctx))

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
        )
    )
    async def feedback(
        ids: Annotated[list[Annotated[str, Field(max_length=200)]], Field(min_length=1, max_length=50)],
        signal: Literal["helpful", "harmful"],
        ctx: Context,
        scope: Scope = None,
    ) -> dict[str, Any]:
        """Say whether memories you used helped or misled; it ranks them in future searches."""
        by_store: dict[str, list[str]] = {}
        for ref in ids:
            store = await call(app.memory.locate, ref, scope)
            by_store.setdefault(store.scope, []).append(ref)
        recorded = 0
        for sc, refs in by_store.items():
            queries = {ref: q for ref in refs if (q := app.query_that_found(ref))}
            done = await call(
                app.memory.store(sc).feedback, refs, signal, author=_author(ctx), queries=queries
            )
            recorded += done["recorded"]
        return {"recorded": recorded, "signal": signal}

    @server.tool(
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
    )
    async def proposals(
        ctx: Context,
        action: Literal["list", "accept", "reject"] = "list",
        id: Annotated[str | None, Field(max_length=200, description="proposal id, to accept/reject")] = None,
        reason: Annotated[str | None, Field(max_length=500)] = None,
        scope: Scope = None,
    ) -> dict[str, Any]:
        """List pending proposed edits, or accept / reject one by id."""
        if action == "list":
            stores = [await call(app.memory.store, scope)] if scope else list(app.memory.stores.values())
            items = []
            for store in stores:
                items += [p | {"scope": store.scope} for p in await call(store.proposals)]
            return {"proposals": items}
        if not id:
            raise ToolError(f"{action} needs the proposal id (from action=list)")
        store = await call(app.memory.store, scope)
        if action == "accept":
            return await call(store.accept, id, author=_author(ctx))
        return await call(store.reject, id, author=_author(ctx), reason=reason)

    for scope_name, store in memory.stores.items():
        for name in store.block_names():
            server.add_resource(
                FunctionResource(
                    uri=f"somna://blocks/{scope_name}/{name}",
                    name=f"{scope_name} block: {name}",
                    description=f"core memory block {name!r} of the {scope_name} store",
                    mime_type="text/markdown",
                    fn=functools.partial(block_text, store, name),
                )
            )

    @server.resource("somna://memory/{scope}/{id}", mime_type="text/markdown")
    def memory_resource(scope: str, id: str) -> str:
        """A memory's Markdown body."""
        try:
            return locked(lambda: app.memory.store(scope).read(id)["content"])
        except SomnaError as exc:
            raise ValueError(str(exc)) from None

    skills = SkillTools(server, catalog, memory, bus, _author, call, files_changed=extension.poll)
    extension.install(server)
    extension.refresh = skills.refresh  # an answer of the extension first catches up, and tells the others

    @server.prompt()
    def reflect() -> str:
        """At the end of a task: write down what was learned, in somna."""
        return (
            "Look back over this task. What did you learn that would help next time — a fix and its cause, a "
            "command that worked, a preference the user stated, a decision and why it was made? For each: "
            "`search` somna first; if a memory covers it, `propose_edit` to add the new detail; otherwise "
            "`write` one short, specific memory (exact commands, paths, numbers; no secrets). Then give "
            "`feedback` on the memories you used: helpful or harmful."
        )

    for tool in server._tool_manager.list_tools():  # the SDK keeps no public handle on a tool's schema
        tool.parameters = lean_schema(tool.parameters)
        tool.description = " ".join((tool.description or "").split())
    if eager:
        warm_up()
    return server


def lean_schema(node: Any, *, names: bool = False) -> Any:
    """A tool's input schema without what pydantic adds for its own sake: titles, `anyOf [T, null]` with
    `default: null` for an optional T (it is optional by not being required). Every harness shows every
    tool definition to the model in every session; arguments are still validated by the full model."""
    if isinstance(node, list):
        return [lean_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    if names:  # `properties` and `$defs` map names to schemas: a parameter may be called "title"
        return {k: lean_schema(v) for k, v in node.items()}
    out = {
        k: lean_schema(v, names=k in ("properties", "$defs"))
        for k, v in node.items()
        if not (k == "title" and isinstance(v, str))
    }
    options = out.get("anyOf")
    if (
        isinstance(options, list)
        and len(options) == 2
        and {"type": "null"} in options
        and out.get("default", 0) is None
    ):
        (kept,) = [o for o in options if o != {"type": "null"}]
        rest = {k: v for k, v in out.items() if k not in ("anyOf", "default")}
        out = {**kept, **rest}
    return out
