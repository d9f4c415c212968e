"""Hybrid search: BM25 words and sqlite-vec vectors fused by their scores (fusion.py), then usage boosts.

The pipeline: query -> candidates (words, vectors) -> fusion -> heirs (a superseded memory hands its rank
to what replaced it) -> filters and usage boosts -> newer first -> compact hits. It takes the index and
the embedder, not the store: the store syncs the index before it asks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import NamedTuple, NotRequired, TypedDict

from somna import untrusted
from somna.embeddings import Embedder
from somna.errors import InvalidInput
from somna.fusion import fuse_scores, rrf, without_question_words, word_pairs
from somna.index import Index, Row
from somna.indexer import ready_model
from somna.notes import INACTIVE
from somna.text import corrects, people, same_frame

MAX_QUERY = 2000
MODES = ("hybrid", "words", "vectors")
# Two hits ranked close (a few places apart) where the newer replaces the older go newer first: a correction that
# sleep-time has not paired with what it corrects yet must not sit below the stale version. The newer
# replaces the older when it says nearly the same thing (cosine), not of someone else; or, about the same
# subject (a shared name, or the same opening words), when it corrects it (a correction word the older
# lacks) or fills the same slot with another value ("... runs on port 8080" -> "... runs on port 9090").
# Not merely for being newer and on the same subject: with memories written one at a time, that moved a
# newer, unrelated fact about the same person above the answer for 13% of the letta-facts questions.
# Nor between long memories (more than RankSettings.claim_words words), by any of these rules: a chat turn or
# a procedure holds many claims, a name and a "not" somewhere in it are no correction, two long turns on one
# topic are near-duplicates in meaning without one replacing the other, and on LongMemEval-S (turns written
# one at a time) moving later turns of a conversation above earlier ones cost a third of the MRR@10.
MAX_CHAIN = 5  # corrections of corrections followed, at most, from a superseded hit to what holds now
# "Close" counts places, not a score ratio: a ratio means something else on each fusion's scale (with RRF's
# flat scores 0.9 spanned about 7 places at the top; with normalised scores, a correction that is a few
# words longer than the fact it corrects already scores 15% lower on words).
NEWER_FIRST_PLACES = 5
NEWER_FIRST_SIMILAR = 0.85
NEWER_FIRST_RELATED = 0.5  # cosine floor for a correction or another value of the same slot


@dataclasses.dataclass(frozen=True)
class RankSettings:
    """How candidates are ranked; bench/lme_ranking.py switches these to compare variants."""

    fusion: str = "scores"  # "rrf" (ranks) or "scores" (normalised scores, weighted)
    words_weight: float = 0.5  # the share of the words' side in the fusion
    k: int = 0  # the RRF constant (0: RRF_K)
    floor: str = "zero"  # with "scores": each scaled from the pool's lowest score ("pool") or from 0 ("zero")
    scale: str = "range"  # with "scores": divided by the span from the floor ("range") or the spread ("std")
    newer_first: str = "close"  # "close": as described above; "off"
    stopwords: bool = False  # question words dropped from the words query
    claim_words: int = 50  # newer-first only between memories this short (0: any)
    pairs: bool = True  # successive words of the query (question words left out) also queried as phrases


RANKING = RankSettings()


def words_query(text: str) -> str:
    """The words side's query: with RANKING.stopwords, without the words that only make it a question."""
    return without_question_words(text) if RANKING.stopwords else text


class SearchHit(TypedDict):
    """One hit: enough to decide whether to `read` it."""

    id: str
    title: str
    snippet: str
    score: float
    type: str
    tags: list[str]
    scope: str
    matched: str  # words, meaning, or words+meaning
    status: NotRequired[str]  # archived or superseded (only with include_archived)
    replaces: NotRequired[list[str]]  # the superseded memories whose rank this one took
    source: NotRequired[str]  # who wrote it
    trust: NotRequired[str]
    flags: NotRequired[list[str]]


class SearchResult(TypedDict):
    mode: str  # hybrid, words or vectors: what was used, not only what was asked
    hits: list[SearchHit]
    note: NotRequired[str]


@dataclasses.dataclass
class Candidates:
    words: list[tuple[int, float, str]]  # (rowid, BM25 score, snippet)
    vectors: list[tuple[int, float]]  # (rowid, cosine)
    mode: str


def candidates(
    index: Index,
    embedder: Embedder | None,
    text: str,
    n: int,
    mode: str = "hybrid",
    vector: list[float] | None = None,
    *,
    chunks: bool = True,
) -> Candidates:
    """The best `n` rows by words and by meaning (vectors only once the model is loaded); `vector`: the
    text's embedding, when the caller made it already (the exam embeds its queries in batches). A long
    memory's meaning is its best window's (`chunks`, max-sim: vectors.py), or its first vector's alone."""
    pairs = word_pairs(text) if RANKING.pairs else []
    words = index.search_words(words_query(text), n, pairs) if mode in ("hybrid", "words") else []
    vectors: list[tuple[int, float]] = []
    used = "words"
    if mode in ("hybrid", "vectors") and embedder is not None and ready_model(index, embedder) is not None:
        vec = vector if vector is not None else embedder.embed([text])[0]
        if any(vec):  # a zero vector (no words, for the hash embedder) has no direction: no cosine
            vectors = index.search_vectors(vec, n, chunks=chunks)
        used = mode
    return Candidates(words, vectors, used)


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


def newer_first(index: Index, shown: list[tuple[float, Row]]) -> list[tuple[float, Row]]:
    """`shown` with each hit moved above an older, closely ranked hit that it restates or contradicts."""
    vecs = index.vectors([r.rowid for _, r in shown])
    unit = {}
    for rowid, v in vecs.items():
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        unit[rowid] = [x / norm for x in v]
    bodies: dict[int, str] = {}

    def text(r: Row) -> str:
        if r.rowid not in bodies:
            bodies.update(index.bodies([r.rowid]))
        return f"{r.title}\n{bodies.get(r.rowid, '')}"

    def replaces(new: Row, old: Row) -> bool:
        cos = sum(a * b for a, b in zip(unit[new.rowid], unit[old.rowid], strict=True))
        if cos < NEWER_FIRST_RELATED:
            return False
        a, b = text(new), text(old)
        names_a, names_b = set(people(a)), set(people(b))
        if RANKING.claim_words and max(len(a.split()), len(b.split())) > RANKING.claim_words:
            return False  # two chat turns on one topic are alike in meaning, and neither replaces the other
        if cos >= NEWER_FIRST_SIMILAR:
            return not (names_a and names_b and not names_a & names_b)  # the same claim of someone else
        if same_frame(a, b):
            return True
        return bool(names_a & names_b) and corrects(a, b)

    out = list(shown)
    for j in range(1, len(out)):
        _, r_j = out[j]
        if r_j.rowid not in unit or not r_j.created:
            continue
        for i in range(j):
            score_i, r_i = out[i]
            if (
                r_i.rowid in unit
                and r_i.created
                and r_j.created > r_i.created
                and j - i <= NEWER_FIRST_PLACES
                and replaces(r_j, r_i)
            ):
                out.insert(i, (score_i, r_j))
                del out[j + 1]
                break
    return out


def _heirs(
    index: Index, rows: dict[int, Row], fused: dict[int, float], why: dict[int, set[str]]
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
        by_id |= index.by_ids(set(frontier.values()) - set(by_id))
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


class Ranking(NamedTuple):
    """The memories a search shows, best first, before their hits are made (snippets, provenance)."""

    mode: str  # what was used: hybrid, words or vectors
    shown: list[tuple[float, Row]]
    why: dict[int, set[str]]  # by rowid: words, meaning
    snippets: dict[int, str]
    heirs: dict[int, list[str]]
    below: list[tuple[float, Row]] = []  # the candidates ranked after the shown ones, best first


def search(
    index: Index,
    embedder: Embedder | None,
    query: str,
    *,
    scope: str,
    limit: int = 8,
    type: str | None = None,
    tags: list[str] | None = None,
    include_archived: bool = False,
    mode: str = "hybrid",
    vector: list[float] | None = None,
) -> SearchResult:
    """Compact hits (id, title, snippet, score, why) for a query; the full text is one `read` away."""
    found = rank(index, embedder, query, limit=limit, type=type, tags=tags, include_archived=include_archived,
                 mode=mode, vector=vector)  # fmt: skip
    shown, snippets, why = found.shown, found.snippets, found.why
    # snippets are made for the hits shown only, not for every candidate of the words pool
    need = [r.rowid for _, r in shown if r.rowid in snippets and not snippets[r.rowid]]
    snippets.update(index.snippets(query, need) if need else {})
    bodies = index.bodies([r.rowid for _, r in shown if not (snippets.get(r.rowid) or "").strip()])
    shown = [(s, dataclasses.replace(r, body=bodies[r.rowid]) if r.rowid in bodies else r) for s, r in shown]
    hits = [
        _hit(index, s, r, snippets.get(r.rowid), scope, why[r.rowid], found.heirs.get(r.rowid))
        for s, r in shown
    ]
    out: SearchResult = {"mode": found.mode, "hits": hits}
    if mode != "words" and found.mode == "words":
        reason = getattr(embedder, "error", None) if embedder is not None else "no embedding model configured"
        out["note"] = (
            ("words only: " + reason) if reason else "words only: the embedding model is still loading"
        )
    return out


def rank(
    index: Index,
    embedder: Embedder | None,
    query: str,
    *,
    limit: int = 8,
    type: str | None = None,
    tags: list[str] | None = None,
    include_archived: bool = False,
    mode: str = "hybrid",
    vector: list[float] | None = None,
) -> Ranking:
    """What `search` shows for a query, in its order, without the hits' snippets and provenance: what the
    exam needs of thousands of searches (the ids), at a fraction of the cost."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("query is empty: say what you are looking for in a few words")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"query is {len(query):,} characters; keep it under {MAX_QUERY:,}")
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    limit = max(1, min(int(limit), 50))
    pool = max(50, limit * 8)
    found = candidates(index, embedder, query, pool, mode, vector)
    rows = index.rows({r[0] for r in found.words} | {r[0] for r in found.vectors}, body=False)
    # Ties are broken by id, not by rowid, so a rebuilt index ranks exactly as the old one did.
    words = sorted((w for w in found.words if w[0] in rows), key=lambda w: (-round(w[1], 6), rows[w[0]].id))
    vectors = sorted(
        (v for v in found.vectors if v[0] in rows), key=lambda v: (-round(v[1], 6), rows[v[0]].id)
    )
    if RANKING.fusion == "scores":
        missing = tuple(max(0.0, got[-1][1]) if len(got) >= pool else 0.0 for got in (words, vectors))
        fused = fuse_scores([(r, sc) for r, sc, _ in words], vectors, RANKING.words_weight, RANKING.floor,
                            RANKING.scale, (missing[0], missing[1]))  # fmt: skip
    else:
        fused = rrf(
            [[rowid for rowid, _, _ in words], [rowid for rowid, _ in vectors]],
            RANKING.k or None,
            weights=[2 * RANKING.words_weight, 2 * (1 - RANKING.words_weight)],
        )
    why: dict[int, set[str]] = {}
    snippets: dict[int, str] = {}
    for rowid, _, snip in words:
        why.setdefault(rowid, set()).add("words")
        snippets[rowid] = snip
    for rowid, _ in vectors:
        why.setdefault(rowid, set()).add("meaning")
    heirs = _heirs(index, rows, fused, why)
    want_tags = {t.lower() for t in tags or []}
    keep = [
        r
        for r in rows.values()
        if r.kind == "memory"
        and (include_archived or r.status not in INACTIVE)
        and (type is None or r.type == type)
        and want_tags <= set(r.tags)
    ]
    usage = index.usage([r.id for r in keep])
    now = dt.datetime.now(dt.UTC)
    scored = []
    for r in keep:
        extra_help, extra_harm, _ = usage.get(r.id, (0, 0, ""))
        net = (r.helpful + extra_help) - (r.harmful + extra_harm)
        boost = 1.0 + 0.2 * math.tanh(net / 3.0)
        boost *= 1.0 + 0.05 * math.exp(-_age_days(r.updated, now) / 90.0)
        if r.status in INACTIVE:
            boost *= 0.5
        scored.append((fused.get(r.rowid, 0.0) * boost, r))  # a successor the heirs added at score 0
    scored.sort(key=lambda x: (-x[0], x[1].id))
    shown = scored[:limit]
    if found.mode != "words" and RANKING.newer_first != "off":
        shown = newer_first(index, shown)
    return Ranking(found.mode, shown, why, snippets, heirs, scored[limit:])


def _hit(
    index: Index,
    score: float,
    row: Row,
    snippet: str | None,
    scope: str,
    why: set[str],
    replaces: list[str] | None,
) -> SearchHit:
    hit: SearchHit = {
        "id": row.id,
        "title": row.title,
        "snippet": _snippet(row, snippet),
        "score": round(score * 100, 3),
        "type": row.type,
        "tags": row.tags,
        "scope": scope,
        "matched": "+".join(sorted(why)),
    }
    if row.status in INACTIVE:
        hit["status"] = row.status
    if replaces:
        hit["replaces"] = replaces
    # provenance, so an agent tells what a person wrote from what was harvested
    full = index.get(row.id)
    if full is not None:
        hit["source"] = full.source or "human"
        hit["trust"] = full.trust or untrusted.effective({"source": full.source})
        flagged = untrusted.flags(f"{full.title}\n{full.body}")
        if flagged:
            hit["flags"] = flagged
    return hit
