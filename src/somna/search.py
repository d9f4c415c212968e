"""Hybrid search: BM25 words and sqlite-vec vectors fused by reciprocal rank, then usage boosts."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import TYPE_CHECKING, Any

from somna.errors import InvalidInput
from somna.index import Row
from somna.sleep.details import corrects, people, same_frame

if TYPE_CHECKING:
    from somna.store import Store

RRF_K = 60
MAX_QUERY = 2000
MODES = ("hybrid", "words", "vectors")
INACTIVE = ("archived", "superseded")
# Two hits ranked close (score ratio) where the newer replaces the older go newer first: a correction that
# sleep-time has not paired with what it corrects yet must not sit below the stale version. The newer
# replaces the older when it says nearly the same thing (cosine), not of someone else; or, about the same
# subject (a shared name, or the same opening words), when it corrects it (a correction word the older
# lacks) or fills the same slot with another value ("... runs on port 8080" -> "... runs on port 9090").
# Not merely for being newer and on the same subject: with memories written one at a time, that moved a
# newer, unrelated fact about the same person above the answer for 13% of the letta-facts questions.
MAX_CHAIN = 5  # corrections of corrections followed, at most, from a superseded hit to what holds now
NEWER_FIRST_CLOSE = 0.9
NEWER_FIRST_SIMILAR = 0.85
NEWER_FIRST_RELATED = 0.5  # cosine floor for a correction or another value of the same slot


def _snippet(row: Row, fts: str | None) -> str:
    text = fts if fts and fts.strip() else row.body
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= 220 else text[:217].rstrip() + "…"


def _age_days(stamp: str, now: dt.datetime) -> float:
    try:
        then = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 365.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=dt.UTC)
    return max(0.0, (now - then).total_seconds() / 86400)


def newer_first(store: Store, shown: list[tuple[float, Row]]) -> list[tuple[float, Row]]:
    """`shown` with each hit moved above an older, closely ranked hit that it restates or contradicts."""
    vecs = store.index.vectors([r.rowid for _, r in shown])
    unit = {}
    for rowid, v in vecs.items():
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        unit[rowid] = [x / norm for x in v]
    bodies: dict[int, str] = {}

    def text(r: Row) -> str:
        if r.rowid not in bodies:
            bodies.update(store.index.bodies([r.rowid]))
        return f"{r.title}\n{bodies.get(r.rowid, '')}"

    def replaces(new: Row, old: Row) -> bool:
        cos = sum(a * b for a, b in zip(unit[new.rowid], unit[old.rowid], strict=True))
        if cos < NEWER_FIRST_RELATED:
            return False
        a, b = text(new), text(old)
        names_a, names_b = set(people(a)), set(people(b))
        if cos >= NEWER_FIRST_SIMILAR:
            return not (names_a and names_b and not names_a & names_b)  # the same claim of someone else
        if same_frame(a, b):
            return True
        return bool(names_a & names_b) and corrects(a, b)

    out = list(shown)
    for j in range(1, len(out)):
        score_j, r_j = out[j]
        if r_j.rowid not in unit or not r_j.created:
            continue
        for i in range(j):
            score_i, r_i = out[i]
            if (
                r_i.rowid in unit
                and r_i.created
                and r_j.created > r_i.created
                and score_j >= NEWER_FIRST_CLOSE * score_i
                and replaces(r_j, r_i)
            ):
                out.insert(i, (score_i, r_j))
                del out[j + 1]
                break
    return out


def _heirs(
    store: Store, rows: dict[int, Row], fused: dict[int, float], why: dict[int, set[str]]
) -> dict[int, list[str]]:
    """A superseded or merged memory that matches the query hands its rank to the memory that replaced it
    (following a chain of corrections to its end): the question that found the stale fact finds its
    correction, even when the correction is worded far from the question. Adds the successors to `rows`,
    raises their score in `fused`; returns, for each successor that gained, the ids it stands in for."""
    gained: dict[int, list[str]] = {}
    frontier = {rowid: r.successor for rowid, r in rows.items() if r.status in INACTIVE and r.successor}
    by_id = {r.id: r for r in rows.values()}
    for _ in range(MAX_CHAIN):
        if not frontier:
            break
        by_id |= store.index.by_ids(set(frontier.values()) - set(by_id))
        nxt: dict[int, str] = {}
        for rowid, succ_id in frontier.items():
            succ = by_id.get(succ_id)
            if succ is None or succ.kind != "memory":
                continue
            if succ.status in INACTIVE:
                if succ.successor:
                    nxt[rowid] = succ.successor
                continue
            rows.setdefault(succ.rowid, succ)
            if fused[rowid] > fused.get(succ.rowid, 0.0):
                fused[succ.rowid] = fused[rowid]
                why.setdefault(succ.rowid, set()).update(why.get(rowid, ()))
                gained.setdefault(succ.rowid, []).append(rows[rowid].id)
        frontier = nxt
    return gained


def search(
    store: Store,
    query: str,
    *,
    limit: int = 8,
    type: str | None = None,
    tags: list[str] | None = None,
    include_archived: bool = False,
    mode: str = "hybrid",
) -> dict[str, Any]:
    """Compact hits (id, title, snippet, score, why) for a query; the full text is one `read` away."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("query is empty: say what you are looking for in a few words")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"query is {len(query):,} characters; keep it under {MAX_QUERY:,}")
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    limit = max(1, min(int(limit), 50))
    store.ensure_synced()
    pool = max(50, limit * 8)
    cand = store._candidates(query, pool, mode)
    rows = store.index.rows({r[0] for r in cand["words"]} | {r[0] for r in cand["vectors"]}, body=False)
    # Ties are broken by id, not by rowid, so a rebuilt index ranks exactly as the old one did.
    words = sorted((w for w in cand["words"] if w[0] in rows), key=lambda w: (-round(w[1], 6), rows[w[0]].id))
    vectors = sorted(
        (v for v in cand["vectors"] if v[0] in rows), key=lambda v: (-round(v[1], 6), rows[v[0]].id)
    )
    fused: dict[int, float] = {}
    why: dict[int, set[str]] = {}
    snippets: dict[int, str] = {}
    for rank, (rowid, _, snip) in enumerate(words):
        fused[rowid] = fused.get(rowid, 0.0) + 1.0 / (RRF_K + rank + 1)
        why.setdefault(rowid, set()).add("words")
        snippets[rowid] = snip
    for rank, (rowid, _) in enumerate(vectors):
        fused[rowid] = fused.get(rowid, 0.0) + 1.0 / (RRF_K + rank + 1)
        why.setdefault(rowid, set()).add("meaning")
    heirs = _heirs(store, rows, fused, why)
    want_tags = {t.lower() for t in tags or []}
    keep = [
        r
        for r in rows.values()
        if r.kind == "memory"
        and (include_archived or r.status not in INACTIVE)
        and (type is None or r.type == type)
        and want_tags <= set(r.tags)
    ]
    usage = store.index.usage([r.id for r in keep])
    now = dt.datetime.now(dt.UTC)
    scored = []
    for r in keep:
        extra_help, extra_harm, _ = usage.get(r.id, (0, 0, ""))
        net = (r.helpful + extra_help) - (r.harmful + extra_harm)
        boost = 1.0 + 0.2 * math.tanh(net / 3.0)
        boost *= 1.0 + 0.05 * math.exp(-_age_days(r.updated, now) / 90.0)
        if r.status in INACTIVE:
            boost *= 0.5
        scored.append((fused[r.rowid] * boost, r))
    scored.sort(key=lambda x: (-x[0], x[1].id))
    shown = scored[:limit]
    if cand["mode"] != "words":
        shown = newer_first(store, shown)
    # snippets are made for the hits shown only, not for every candidate of the words pool
    need = [r.rowid for _, r in shown if r.rowid in snippets and not snippets[r.rowid]]
    snippets.update(store.index.snippets(query, need) if need else {})
    bodies = store.index.bodies([r.rowid for _, r in shown if not (snippets.get(r.rowid) or "").strip()])
    shown = [(s, dataclasses.replace(r, body=bodies[r.rowid]) if r.rowid in bodies else r) for s, r in shown]
    hits = [
        {
            "id": r.id,
            "title": r.title,
            "snippet": _snippet(r, snippets.get(r.rowid)),
            "score": round(s * 100, 3),
            "type": r.type,
            "tags": r.tags,
            "scope": store.scope,
            "matched": "+".join(sorted(why[r.rowid])),
        }
        | ({"status": r.status} if r.status in INACTIVE else {})
        | ({"replaces": heirs[r.rowid]} if r.rowid in heirs else {})
        for s, r in shown
    ]
    out: dict[str, Any] = {"mode": cand["mode"], "hits": hits}
    if mode != "words" and cand["mode"] == "words":
        emb = store.embedder
        reason = getattr(emb, "error", None) if emb is not None else "no embedding model configured"
        out["note"] = (
            ("words only: " + reason) if reason else "words only: the embedding model is still loading"
        )
    return out
