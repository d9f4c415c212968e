"""The skills' MCP surface, thin over somna.skills and somna.skill_store.

Three tools: `search_skills` (an empty query lists the catalog), `load_skill` (level 2; with `file`, level 3)
whose `name` is an enum of the valid skills while their names fit the skills budget, and `propose_skill`.
Skills are resources too (`somna://skills/<name>`: the SKILL.md). A poll of the skill folders every 0.5 s
(a stat per folder and SKILL.md) keeps the catalog current; when it changes, `load_skill` is rebuilt and
clients hear `notifications/tools/list_changed` (when the enum changed) and `resources/list_changed`:
handshake-era sessions directly, 2026-era ones through their `subscriptions/listen` streams on the bus.
Once a client speaks the Skills extension (skill_extension.py), the poll also stats every skill file, so
an edited reference file (a changed digest) is heard too.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.subscriptions import ResourcesListChanged, SubscriptionBus, ToolsListChanged
from mcp_types import ToolAnnotations
from pydantic import Field

from somna import skill_store
from somna.errors import SomnaError
from somna.scopes import Memory
from somna.skills import MAX_NAME, MAX_SKILL_MD, Catalog

log = logging.getLogger("somna.skills")
POLL_SECONDS = 0.5
NAME_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
RO = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
SEARCH_DOC = (
    "Find skills (instructions for a kind of task) by a few words, or list them all with an empty "
    "query; then load_skill one. Invalid skills are listed with their problems."
)
LOAD_DOC = (
    "Load a skill: its instructions (SKILL.md) and its list of files. Load one before a task it "
    "fits. With `file`, read one of its files instead (a path from that list)."
)
PROPOSE_DOC = (
    "Propose a new skill, or a new version of one, learned from experience: a procedure that "
    "worked and will recur. Validated, then queued for review (proposals) unless the store's "
    "policy applies it."
)
Query = Annotated[str, Field(max_length=2000, description="a few words about the task; empty: list all")]
File = Annotated[str | None, Field(max_length=500, description="a path from the skill's file list")]
Name = Annotated[str, Field(max_length=MAX_NAME, pattern=NAME_PATTERN, description="the skill's folder name")]
Content = Annotated[
    str,
    Field(
        max_length=MAX_SKILL_MD,
        description="the whole SKILL.md: front matter (name, "
        "description: what it does, when to use it), then the instructions",
    ),
]
Base = Annotated[str | None, Field(max_length=64, description="to edit: `version` from load_skill")]


class SkillTools:
    """Registers the skill tools, resources and notifications on a server; `watching()` keeps them current."""

    def __init__(
        self,
        server: MCPServer,
        catalog: Catalog,
        memory: Memory,
        bus: SubscriptionBus,
        author: Callable[[Context], str],
        call: Callable[..., Awaitable[Any]],
        files_changed: Callable[[], bool] | None = None,
    ) -> None:
        self.server, self.catalog, self.memory, self.bus, self.author = server, catalog, memory, bus, author
        self.files_changed = files_changed  # the Skills extension's check of every skill file (its digests)
        self.call = call  # the server's one wrapper for core calls: a worker thread, one call at a time
        self.enum: list[str] | None = None
        self._sessions: OrderedDict[int, tuple[Any, Any]] = OrderedDict()
        self._register()
        self._install_load_tool(first=True)
        server.middleware.append(self._middleware)

    def _register(self) -> None:
        server, catalog = self.server, self.catalog

        @server.tool(annotations=RO, description=SEARCH_DOC)
        async def search_skills(
            query: Query = "",
            limit: Annotated[int, Field(ge=1, le=100)] = 10,
            offset: Annotated[int, Field(ge=0)] = 0,
        ) -> dict[str, Any]:
            return await self.call(catalog.search, query, limit=limit, offset=offset)

        @server.tool(annotations=WRITE, description=PROPOSE_DOC)
        async def propose_skill(
            name: Name,
            content: Content,
            ctx: Context,
            base_version: Base = None,
            reason: Annotated[str | None, Field(max_length=500)] = None,
            scope: Annotated[str | None, Field(description="project or user")] = None,
        ) -> dict[str, Any]:
            store = await self.call(self.memory.store, scope) if scope else self.memory.default
            out = await self.call(
                skill_store.propose,
                store,
                name,
                content,
                author=self.author(ctx),
                base_version=base_version,
                reason=reason,
            )
            if out["status"] == "applied":
                await self.refresh()
            return out

        @server.resource(
            "somna://skills/{name}",
            name="skill",
            mime_type="text/markdown",
            description="a skill's SKILL.md (front matter and instructions)",
        )
        def skill_resource(name: str) -> str:
            try:
                return (catalog.get(name).folder / "SKILL.md").read_text(encoding="utf-8")
            except (SomnaError, OSError) as exc:
                raise ResourceError(str(exc)) from None

    def _install_load_tool(self, *, first: bool = False) -> bool:
        """(Re)build load_skill with the current enum; True when its definition changed."""
        enum = self.catalog.enum()
        if not first and enum == self.enum:
            return False
        self.enum = enum
        catalog = self.catalog

        async def load_skill(name: str, file: str | None = None) -> dict[str, Any]:
            if file:
                return await self.call(catalog.read_file, name, file)
            return await self.call(catalog.load, name)

        extra: dict[str, Any] = {"enum": list(enum)} if enum else {}
        about = "the skill to load" if enum else "a skill name from search_skills"
        name_type = Annotated[str, Field(max_length=MAX_NAME, description=about, json_schema_extra=extra)]
        load_skill.__annotations__ = {"name": name_type, "file": File, "return": dict[str, Any]}
        if not first:
            self.server.remove_tool("load_skill")
        self.server.add_tool(load_skill, name="load_skill", description=LOAD_DOC, annotations=RO)
        return True

    async def refresh(self, *, deep: bool = False) -> None:
        """Re-read the skill folders; on a change rebuild load_skill and tell the clients. `deep` (the
        watcher) also asks whether any file of a skill changed, which the catalog's scan does not see."""
        changed = await anyio.to_thread.run_sync(self.catalog.refresh)
        if deep and self.files_changed is not None:
            changed = await anyio.to_thread.run_sync(self.files_changed) or changed
        if not changed:
            return
        tools_changed = self._install_load_tool()
        log.info("skills changed: %d valid, %d invalid", len(self.catalog.skills), len(self.catalog.invalid))
        for _, session in list(self._sessions.values()):
            try:
                if tools_changed:
                    await session.send_tool_list_changed()
                await session.send_resource_list_changed()
            except Exception as exc:  # a gone client must not keep the others from hearing
                log.debug("could not notify a session: %s", exc)
        if tools_changed:
            await self.bus.publish(ToolsListChanged())
        await self.bus.publish(ResourcesListChanged())

    @asynccontextmanager
    async def watching(self, interval: float = POLL_SECONDS) -> AsyncIterator[None]:
        """For the server's lifespan: poll the skill folders while it runs."""

        async def watch() -> None:
            cost = 0.0
            while True:
                # A scan stats every skill folder: with thousands of skills, poll less often (at most 1.5 s
                # apart) so the watcher stays under ~10% of a core.
                await anyio.sleep(min(max(interval, 10 * cost), 1.5))
                start = anyio.current_time()
                try:
                    await self.refresh(deep=True)
                except Exception:  # the watcher outlives any one bad scan
                    log.exception("skills refresh failed")
                cost = anyio.current_time() - start

        async def embed() -> None:  # vectors for new skills once the model is ready, before a search
            while True:
                await anyio.sleep(2)
                try:
                    await anyio.to_thread.run_sync(self.catalog.embed)
                except Exception:
                    log.exception("embedding skills failed")

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            tg.start_soon(embed)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    async def _middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """Remember sessions to notify; advertise listChanged; list each skill as a resource."""
        result = await call_next(ctx)
        params = getattr(ctx.session, "client_params", None)
        if params is not None:  # one entry per connection: its client_params object is the connection's own
            self._sessions[id(params)] = (params, ctx.session)  # params kept alive, so the id stays unique
            self._sessions.move_to_end(id(params))
            while len(self._sessions) > 32:
                self._sessions.popitem(last=False)
        if ctx.method == "initialize" and isinstance(result, dict):
            caps = result.get("capabilities") or {}
            for kind in ("tools", "resources"):
                if isinstance(caps.get(kind), dict):
                    caps[kind]["listChanged"] = True
        elif ctx.method == "resources/list" and isinstance(result, dict):
            skills = self.catalog.skills  # one snapshot: a refresh swaps the whole mapping
            result.setdefault("resources", []).extend(
                {
                    "uri": f"somna://skills/{n}",
                    "name": f"skill: {n}",
                    "mimeType": "text/markdown",
                    "description": skills[n].description,
                }
                for n in sorted(skills)
            )
        return result
