"""The views of memories and their history: search and filters, a memory's page, its edit, its timeline and
the store's, a commit's diff, and revert. Each a short path through the core API.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from somna.browse import Filters
from somna.errors import Conflict, InvalidInput
from somna.history import Commit
from somna.notes import INACTIVE
from somna.ui import render
from somna.ui.app import AUTHOR, UI, form

PAGE = 50
FILTERS = ("type", "scope", "status", "source", "trust", "flags")


def who(author: str, message: str) -> str:
    """The kind of writer of a commit: person, sleep, sync, somna or agent."""
    if author == "human":
        return "person"
    if author == "somna-sleep":
        return "sleep"
    if author == "sync" or message.startswith(("sync", "Merge")):
        return "sync"
    if author.startswith("somna"):
        return "somna"
    return "agent"


def _filters(q: dict[str, str]) -> Filters:
    return Filters(
        type=q.get("type") or None,
        status=q.get("status") or None,
        source=q.get("source") or None,
        trust=q.get("trust") or None,
        flagged=q.get("flags") == "instructions",
    )


def _search(ui: UI, q: dict[str, str]) -> dict[str, Any]:
    """Hybrid search, as an agent's, then the filters search itself does not take."""
    status = q.get("status") or ""
    out = ui.memory.search(
        q["q"],
        scope=q.get("scope") or None,
        limit=50,
        type=q.get("type") or None,
        include_archived=status not in ("", "active"),
    )
    hits = [
        h
        for h in out["hits"]
        if (not status or h.get("status", "active") == status)
        and (not q.get("source") or h.get("source") == q["source"])
        and (not q.get("trust") or h.get("trust") == q["trust"])
        and (not q.get("flags") or q["flags"] in h.get("flags", []))
    ]
    return {"hits": hits, "total": len(hits), "mode": out["mode"], "note": out.get("note")}


def _list(ui: UI, q: dict[str, str], offset: int) -> dict[str, Any]:
    filters = _filters(q)
    stores = [ui.store(q["scope"])] if q.get("scope") else list(ui.memory.stores.values())
    total, hits = 0, list[dict[str, Any]]()
    for store in stores:  # one store, or each in turn (the project store's first)
        n, rows = store.browse(filters, limit=PAGE, offset=max(0, offset - total))
        hits += [
            {"id": r.id, "title": r.title, "type": r.type, "scope": store.scope, "status": r.status,
             "source": r.source, "trust": r.trust, "updated": r.updated, "tags": r.tags}
            for r in rows
        ][: PAGE - len(hits)]  # fmt: skip
        total += n
    return {"hits": hits, "total": total, "mode": "list", "note": None}


def _choices(ui: UI) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for store in ui.memory.stores.values():
        for key, values in store.filter_values().items():
            out.setdefault(key, set()).update(values)
    out["status"] = {"active", *INACTIVE, *out.get("status", set())}
    return {k: sorted(v) for k, v in out.items()}


async def memories(ui: UI, request: Request) -> Response:
    q = {k: request.query_params.get(k, "").strip() for k in ("q", *FILTERS)}
    try:
        offset = max(0, int(request.query_params.get("offset") or 0))
    except ValueError:
        offset = 0
    if q["q"]:
        found = await ui.core(_search, ui, q)
    else:
        found = await ui.core(_list, ui, q, offset)
    choices = await ui.core(_choices, ui)
    kept = {k: v for k, v in q.items() if v}
    newer = urlencode({**kept, "offset": max(0, offset - PAGE)}) if offset > 0 else None
    older = (
        urlencode({**kept, "offset": offset + PAGE})
        if not q["q"] and offset + PAGE < found["total"]
        else None
    )
    return ui.page("memories.html", q=q, found=found, choices=choices, offset=offset, page_size=PAGE,
                   newer=newer, older=older, view="memories")  # fmt: skip


def _ids(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if v]


def _memory(ui: UI, scope: str, ref: str) -> dict[str, Any]:
    store = ui.store(scope)
    note = store.read(ref)
    meta = note["meta"]
    row = store.index.get(ref)
    usage = store.index.usage([ref]).get(ref, (0, 0, ""))
    links = {key: _ids(meta.get(key)) for key in ("related", "supersedes", "superseded_by")}
    feedback = {
        "helpful": (row.helpful if row else 0) + usage[0],
        "harmful": (row.harmful if row else 0) + usage[1],
        "last": usage[2],
    }
    return {"note": note, "links": links, "feedback": feedback}


async def memory(ui: UI, request: Request) -> Response:
    scope, ref = request.path_params["scope"], request.path_params["id"]
    data = await ui.core(_memory, ui, scope, ref)
    return ui.page("memory.html", scope=scope, view="memories", **data)


async def edit(ui: UI, request: Request) -> Response:
    scope, ref = request.path_params["scope"], request.path_params["id"]
    fields = await form(request)
    body, base, reason = fields.get("body", ""), fields.get("base_version", ""), fields.get("reason", "")
    if not body.strip():
        raise InvalidInput("the text is empty; archive a memory rather than emptying it")
    body = body.replace("\r\n", "\n")
    try:
        await ui.core(
            lambda: ui.store(scope).edit(
                ref, "replace", base, author=AUTHOR, text=body, reason=reason.strip() or "edited on the page"
            )
        )
    except Conflict as exc:
        return ui.page(
            "conflict.html", 409, scope=scope, id=ref, mine=body, current=exc.current_text,
            current_version=exc.current_version, message=str(exc), view="memories",
        )  # fmt: skip
    return RedirectResponse(ui.url(f"/m/{scope}/{ref}"), status_code=303)


def _history(ui: UI, scope: str, ref: str) -> dict[str, Any]:
    store = ui.store(scope)
    versions = store.history(ref, limit=50, diff=False)["versions"]
    out = []
    for i, v in enumerate(versions):
        older = versions[i + 1]["commit"] if i + 1 < len(versions) else None
        try:
            diff = (
                store.diff(ref, older, v["commit"])
                if older
                else store.diff(ref, v["commit"] + "^", v["commit"])
            )
        except InvalidInput:  # the first commit of the store: nothing before it
            diff = ""
        out.append({**v, "who": who(v["author"], v["message"]), "diff": render.diff_lines(diff)})
    return {"title": store.read(ref)["title"], "versions": out}


async def memory_history(ui: UI, request: Request) -> Response:
    scope, ref = request.path_params["scope"], request.path_params["id"]
    data = await ui.core(_history, ui, scope, ref)
    return ui.page("history.html", scope=scope, id=ref, view="history", **data)


async def revert(ui: UI, request: Request) -> Response:
    scope, ref = request.path_params["scope"], request.path_params["id"]
    to = (await form(request)).get("to") or None
    await ui.core(lambda: ui.store(scope).revert(ref, to=to, author=AUTHOR))
    return RedirectResponse(ui.url(f"/m/{scope}/{ref}/history"), status_code=303)


def _timeline(ui: UI) -> list[dict[str, Any]]:
    out = []
    for scope, store in ui.memory.stores.items():
        commits: list[Commit] = store.timeline(limit=200)
        out += [
            {"scope": scope, "sha": c.sha, "author": c.author, "date": c.date, "message": c.message,
             "who": who(c.author, c.message)}
            for c in commits
        ]  # fmt: skip
    return sorted(out, key=lambda c: c["date"], reverse=True)[:200]


async def timeline(ui: UI, request: Request) -> Response:
    commits = await ui.core(_timeline, ui)
    kind = request.query_params.get("who", "")
    if kind:
        commits = [c for c in commits if c["who"] == kind]
    return ui.page("timeline.html", commits=commits, who=kind, view="history")


async def commit(ui: UI, request: Request) -> Response:
    scope, sha = request.path_params["scope"], request.path_params["sha"]
    text = await ui.core(lambda: ui.store(scope).show_commit(sha))
    if not text.strip():
        raise InvalidInput(f"no commit {sha[:40]!r} in the {scope} store")
    sha, author, date, *rest = text.splitlines() + ["", "", ""]  # git show --format=%H%n%an%n%aI%n%B
    return ui.page(
        "commit.html", scope=scope, sha=sha, author=author, who=who(author, rest[0]), date=date,
        lines=render.diff_lines("\n".join(rest)), view="history",
    )  # fmt: skip


ROUTES = [
    ("/", memories, ("GET",)),
    ("/m/{scope}/{id}", memory, ("GET",)),
    ("/m/{scope}/{id}/edit", edit, ("POST",)),
    ("/m/{scope}/{id}/history", memory_history, ("GET",)),
    ("/m/{scope}/{id}/revert", revert, ("POST",)),
    ("/history", timeline, ("GET",)),
    ("/history/{scope}/{sha}", commit, ("GET",)),
]
