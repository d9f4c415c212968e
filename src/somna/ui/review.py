"""The views of what waits for a decision and of what sleep-time did: the proposals queue (every kind, with its
diff, rationale, evidence and what the exam says it would break), accept and reject, each cycle's report,
and the chart of learning over time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from somna.errors import InvalidInput, NotFound
from somna.ui import render
from somna.ui.app import AUTHOR, UI, form

REPORT_NAME = re.compile(r"^[0-9A-Za-z_.+\-]{1,80}$")
MAX_REPORT = 8 * 1024 * 1024


def _proposals(ui: UI) -> list[dict[str, Any]]:
    out = []
    for scope, store in ui.memory.stores.items():
        out += [{**p, "scope": scope} for p in store.proposals()]
    return sorted(out, key=lambda p: str(p.get("created") or ""), reverse=True)


async def proposals(ui: UI, request: Request) -> Response:
    items = await ui.core(_proposals, ui)
    return ui.page("review.html", proposals=items, view="review")


def _exam(ui: UI, scope: str, pid: str) -> list[str]:
    """What the exam says accepting a sleep proposal would break (tried on a staging copy; nothing lands)."""
    from somna.sleep import actions, gate  # the exam and numpy: for this view only

    store = ui.store(scope)
    proposal = store.queue.get(pid)
    if proposal.kind != "sleep":
        return []
    action = actions.queued(store, proposal)
    if action.kind not in gate.GATED:
        return []
    return [why for _, why in gate.check(store, [action]).dropped]


def _proposal(ui: UI, scope: str, pid: str) -> dict[str, Any]:
    p = ui.store(scope).queue.get(pid)
    body = p.body
    fence = re.search(r"```diff\n(.*?)```", body, re.S)
    evidence = p.fields.get("evidence")
    data = p.fields.get("data") if p.kind == "sleep" else None
    return {
        "p": p,
        "diff": render.diff_lines(fence.group(1)) if fence else [],
        "text": body if not fence and p.kind != "sleep" else "",  # sleep's body is its rationale and evidence
        "targets": list(p.fields.get("targets") or {}) if p.kind == "sleep" else [],
        "data": json.dumps(data, indent=2, ensure_ascii=False) if data else "",
        "evidence": json.dumps(evidence, indent=2, ensure_ascii=False) if evidence else "",
    }


async def proposal(ui: UI, request: Request) -> Response:
    scope, pid = request.path_params["scope"], request.path_params["pid"]
    data = await ui.core(_proposal, ui, scope, pid)
    asked = request.query_params.get("exam") == "1"
    breaks = await ui.core(_exam, ui, scope, pid) if asked else None
    return ui.page("proposal.html", scope=scope, asked=asked, breaks=breaks, view="review", **data)


async def decide(ui: UI, request: Request) -> Response:
    scope, pid, verb = request.path_params["scope"], request.path_params["pid"], request.path_params["verb"]
    fields = await form(request)
    store = ui.store(scope)
    if verb == "accept":
        try:
            out = await ui.core(lambda: store.accept(pid, author=AUTHOR, force=fields.get("force") == "1"))
        except InvalidInput as exc:
            if "would lose an answer" not in str(exc):
                raise
            data = await ui.core(_proposal, ui, scope, pid)
            return ui.page(
                "proposal.html",
                409,
                scope=scope,
                asked=True,
                breaks=[str(exc)],
                refused=True,
                view="review",
                **data,
            )
        message = f"accepted {pid}" + (
            f"; the exam says it takes away: {out['breaks'][0]}" if out.get("breaks") else ""
        )
    elif verb == "reject":
        await ui.core(lambda: store.reject(pid, author=AUTHOR, reason=fields.get("reason") or None))
        message = f"rejected {pid}"
    else:
        raise NotFound(f"no action {verb!r} on a proposal: accept or reject")
    items = await ui.core(_proposals, ui)
    return ui.page("review.html", proposals=items, done=message, view="review")


def _reports(ui: UI) -> list[dict[str, Any]]:
    out = []
    for scope, store in ui.memory.stores.items():
        folder = store.layout.sleep_dir / "reports"
        for path in sorted(folder.glob("*.json"), reverse=True)[:500] if folder.is_dir() else []:
            data = _read_report(path)
            if data is not None:
                out.append({"scope": scope, "name": path.stem, **_summary(data)})
    return sorted(out, key=lambda r: r["started"], reverse=True)


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        if path.is_symlink() or path.stat().st_size > MAX_REPORT:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for a in data.get("applied") or []:
        if isinstance(a, dict):
            counts[str(a.get("kind"))] = counts.get(str(a.get("kind")), 0) + 1
    exam = data.get("exam") if isinstance(data.get("exam"), dict) else {}
    return {
        "started": str(data.get("started") or ""),
        "dry_run": bool(data.get("dry_run")),
        "counts": counts,
        "queued": len(data.get("queued") or []),
        "dropped": len(data.get("dropped") or []),
        "tokens": data.get("tokens") or 0,
        "cost": float(data.get("cost") or 0.0),
        "exam": exam,
        "seconds": float(data.get("seconds") or 0.0),
    }


async def reports(ui: UI, request: Request) -> Response:
    items = await ui.core(_reports, ui)
    return ui.page("sleep.html", reports=items, view="sleep")


def _report(ui: UI, scope: str, name: str) -> dict[str, Any]:
    if not REPORT_NAME.match(name) or name.startswith("."):
        raise InvalidInput("a report's name is its cycle's start time")
    folder = ui.store(scope).layout.sleep_dir / "reports"
    path = folder / f"{name}.json"
    if path.resolve().parent != folder.resolve():
        raise InvalidInput("a report is a file of the store's sleep reports")
    data = _read_report(path)
    if data is None:
        raise NotFound(f"no sleep report {name!r} in the {scope} store")
    sections = {
        key: [a for a in data.get(key) or [] if isinstance(a, dict)][:500]
        for key in ("applied", "queued", "dropped")
    }
    return {"summary": _summary(data), "sections": sections, "notes": [str(n) for n in data.get("notes") or []],
            "commit": str(data.get("commit") or ""), "head": str(data.get("head") or "")}  # fmt: skip


async def report(ui: UI, request: Request) -> Response:
    scope, name = request.path_params["scope"], request.path_params["name"]
    data = await ui.core(_report, ui, scope, name)
    return ui.page("report.html", scope=scope, name=name, view="sleep", **data)


def _learning(ui: UI) -> dict[str, Any]:
    size: dict[str, int] = {}
    tokens: dict[str, int] = {}
    helpful: dict[str, int] = {}
    harmful: dict[str, int] = {}
    active = [0, 0]
    for store in ui.memory.stores.values():
        for day, files, nbytes in store.growth():
            size[day] = size.get(day, 0) + files
            tokens[day] = tokens.get(day, 0) + nbytes // 4
        stats = store.stats()
        active[0] += stats["active"][0]
        active[1] += stats["active"][1] // 4
        for day, h, x in stats["feedback"]:
            helpful[day] = helpful.get(day, 0) + h
            harmful[day] = harmful.get(day, 0) + x
    exam = [(r["started"][:16].replace("T", " "), float(r["exam"]["score_after"]))
            for r in reversed(_reports(ui)) if r["exam"].get("probes")]  # fmt: skip
    return {
        "active": active,
        "charts": [
            render.chart("memories in the store", sorted(size.items())),
            render.chart("tokens in memory/ (≈ characters / 4)", sorted(tokens.items())),
            render.chart("exam score after each sleep cycle", exam[-60:], fixed_max=1.0),
            render.chart("helpful feedback a day", sorted(helpful.items())),
            render.chart("harmful feedback a day", sorted(harmful.items())),
        ],
    }


async def learning(ui: UI, request: Request) -> Response:
    data = await ui.core(_learning, ui)
    return ui.page("learning.html", view="learning", **data)


ROUTES = [
    ("/review", proposals, ("GET",)),
    ("/review/{scope}/{pid}", proposal, ("GET",)),
    ("/review/{scope}/{pid}/{verb}", decide, ("POST",)),
    ("/sleep", reports, ("GET",)),
    ("/sleep/{scope}/{name}", report, ("GET",)),
    ("/learning", learning, ("GET",)),
]
