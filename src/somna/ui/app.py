"""The page's ASGI app: the routes of each view, the templates, and one core call at a time.

`build_app(memory, token, ...)` is what `somna ui` serves and what `somna serve --http` mounts at /ui: the
routes of `pages` (memories, history) and `review` (proposals, sleep, learning), behind `auth.Guard`.
Every view reads through the core API (`Store`), like an agent; edits are the same conditional edits,
by `human`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from somna.errors import NotFound, SomnaError
from somna.scopes import Memory
from somna.store import Store
from somna.ui import auth, render

STATIC = Path(__file__).parent / "static"
MAX_FORM = 1024 * 1024  # a memory's body is at most 100,000 characters; a form is a little more than that
AUTHOR = "human"

Handler = Callable[["UI", Request], Awaitable[Response]]


@dataclass
class UI:
    """What every view needs: the stores, the templates, and the one-at-a-time lock of core calls."""

    memory: Memory
    prefix: str = ""
    env: Environment = field(init=False)
    limiter: anyio.CapacityLimiter = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("somna.ui", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["markdown"] = render.markdown
        self.env.globals["prefix"] = self.prefix
        self.env.globals["scopes"] = list(self.memory.stores)
        self.limiter = anyio.CapacityLimiter(1)

    async def core(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A core call on a worker thread, one at a time (the stores are shared with the page's other views)."""

        def locked() -> Any:
            with self.lock:
                return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(locked, limiter=self.limiter)

    def page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)

    def store(self, scope: str) -> Store:
        if scope not in self.memory.stores:
            raise NotFound(f"no {scope!r} store here; stores: {', '.join(self.memory.stores)}")
        return self.memory.stores[scope]

    def url(self, path: str) -> str:
        return f"{self.prefix}{path}"


async def form(request: Request) -> dict[str, str]:
    """A posted form (urlencoded), each field's first value; refused past MAX_FORM."""
    if int(request.headers.get("content-length") or 0) > MAX_FORM:
        raise FormTooLarge(f"the form is over {MAX_FORM:,} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormTooLarge(f"the form is over {MAX_FORM:,} bytes")
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


class FormTooLarge(SomnaError):
    """A posted form is larger than the page ever sends."""


def _route(ui: UI, path: str, handler: Handler, methods: Sequence[str] = ("GET",)) -> Route:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(ui, request)
        except NotFound as exc:
            return ui.page("error.html", 404, title="Not found", message=str(exc))
        except FormTooLarge as exc:
            return ui.page("error.html", 413, title="Too large", message=str(exc))
        except SomnaError as exc:
            return ui.page("error.html", 400, title="Refused", message=str(exc))

    return Route(path, endpoint, methods=list(methods))


def build_app(
    memory: Memory,
    *,
    token: str,
    codes: auth.Codes,
    hosts: Sequence[str] | None,
    prefix: str = "",
) -> auth.Guard:
    """The page behind its guard. `hosts`: the Host headers it answers (None: checked in front of it)."""
    from somna.ui import pages, review  # the views import this module's UI

    ui = UI(memory, prefix=prefix)
    routes: list[BaseRoute] = [
        _route(ui, path, handler, methods) for path, handler, methods in (*pages.ROUTES, *review.ROUTES)
    ]
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    app = Starlette(routes=routes)
    return auth.Guard(app, token=token, hosts=hosts, codes=codes, prefix=prefix)
