"""A long memory has a vector for each later window of its text (chunks.py): search scores it by its best
one, every other reader sees its first, and edits, deletes and a rebuild keep the windows in step. With
the real model, a fact after 300 words of a memory is found by meaning alone, in-process and over MCP."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from somna import chunks, notes
from somna.db import connect
from somna.embeddings import HashEmbedder, LazyEmbedder
from somna.store import Store
from somna.vectors import CHUNK_BASE
from somna.wordpiece import WordPiece
from tests.conftest import call, mcp_client, somna

FILLER = [
    "The team met on Tuesday to go over the quarterly roadmap and the open hiring plans.",
    "Most of the discussion was about the onboarding guide and who owns which section of it.",
    "Someone suggested moving the weekly sync to Thursday afternoons, which nobody objected to.",
    "The design review for the new settings page was pushed back by a week for lack of time.",
    "Lunch was catered from the usual place, and the coffee machine on the third floor is broken.",
]
FACT = "The backup server for the billing ledger is named kestrel-9 and lives in the Oslo data centre."
QUERY = "what is the billing ledger backup machine called"
# no word of it is in any memory below: over MCP (hybrid search) only meaning can find the fact
DISJOINT = "Norway facility hosting finance archive"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def long_text(words_before: int = 330) -> str:
    body: list[str] = []
    while sum(len(s.split()) for s in body) < words_before:
        body.append(FILLER[len(body) % len(FILLER)])
    return "Notes from the planning meeting\n\n" + " ".join(body) + " " + FACT + " " + " ".join(FILLER[:3])


def vector_rows(store: Store) -> list[int]:
    return [r for (r,) in store.index.conn.execute("SELECT rowid FROM vec_bits ORDER BY rowid")]


def test_windows_fit_the_model_and_overlap() -> None:
    text = long_text(600)
    wins = chunks.windows("Notes from the planning meeting", text, 254)
    tok = WordPiece()
    assert wins[0] == text and len(wins) >= 3
    assert all(len(tok.encode(w).ids) <= 256 for w in wins[1:])
    assert all(w.startswith("Notes from the planning meeting\n") for w in wins[1:])
    assert FACT.split()[-1] in wins[-1]
    tail = wins[1].split("\n", 1)[1]
    assert tail.split()[-8:] == wins[2].split("\n", 1)[1].split()[: len(tail.split())][-8:] or any(
        part in wins[2] for part in tail.split(". ")[-2:]
    )  # the next window starts inside this one
    short = "A short memory stays one text."
    assert chunks.windows("t", short, 254) == [short]
    assert chunks.windows("t", "word " * 200, 254) == ["word " * 200]  # 200 pieces: within reach
    assert chunks.windows("t", text, None) == [text]  # an embedder that reads every word


def test_a_long_memory_has_more_vectors_and_one_for_everyone_else(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", embedder=HashEmbedder(window=40))
    emb = store.embedder
    assert emb is not None
    store.write("Use tabs in the Makefile.", author="t")
    long = store.write(long_text(), author="t", force=True)
    rows = {r.id: r for r in store.index.all_rows()}
    ids = vector_rows(store)
    extra = [r for r in ids if r >= CHUNK_BASE]
    assert len(ids) - len(extra) == store.index.count() and len(extra) >= 5  # short ones: one vector each
    assert store.index.vector_count() == store.index.count()
    # what compares memories (newer-first, sleep-time, the duplicate check) reads the first vector
    first = store.index.vectors([rows[long["id"]].rowid])[rows[long["id"]].rowid]
    whole = emb.embed([notes.embed_text(rows[long["id"]].title, rows[long["id"]].body)])[0]
    assert max(abs(a - b) for a, b in zip(first, whole, strict=True)) < 1e-6
    # search answers one (rowid, cosine) per memory, the best window's
    fact_vec = emb.embed([FACT])[0]
    found = store.index.search_vectors(fact_vec, 10)
    assert found[0][0] == rows[long["id"]].rowid and len(found) == len({r for r, _ in found}) == len(rows)
    first_only = dict(store.index.search_vectors(fact_vec, 10, chunks=False))
    assert found[0][1] > first_only[rows[long["id"]].rowid]
    # an edit replaces the windows, a delete takes them all
    read = store.read(long["id"])
    store.edit(long["id"], "replace", read["version"], author="t", text="Now a short memory.")
    assert [r for r in vector_rows(store) if r >= CHUNK_BASE] == []
    store.edit(long["id"], "replace", store.read(long["id"])["version"], author="t", text=long_text(500))
    assert len([r for r in vector_rows(store) if r >= CHUNK_BASE]) > len(extra)
    (store.root / rows[long["id"]].path).unlink()
    store.sync()
    assert vector_rows(store) == sorted(r.rowid for r in store.index.all_rows())


def test_binary_preselection_scores_memories_by_their_best_window_too(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", embedder=HashEmbedder(window=40))
    store.write_many(
        [{"content": long_text(200 + 40 * i) + f" Topic {i}."} for i in range(6)]
        + [{"content": f"{FILLER[i % 5]} Short memory {i}."} for i in range(60)],
        author="t",
    )
    emb = store.embedder
    assert emb is not None
    for query in (FACT, FILLER[2], "Topic 3 hiring plans", "coffee machine"):
        vec = emb.embed([query])[0]
        store.index.binary_min = 10**9
        exact = store.index.search_vectors(vec, 12)
        store.index.binary_min = 0
        binary = store.index.search_vectors(vec, 12)
        assert [round(x, 5) for _, x in binary] == [round(x, 5) for _, x in exact]
        assert len({r for r, _ in binary}) == 12


def test_the_duplicate_check_compares_whole_memories_not_one_window(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", embedder=HashEmbedder(window=40))
    store.write(long_text(), author="t")
    window = chunks.windows("Notes from the planning meeting", long_text(), 40)[3]
    assert store.write(window.split("\n", 1)[1], author="t")["id"]  # a window alone is not the memory


def test_an_index_from_before_windows_gets_them_from_the_backfill(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", embedder=HashEmbedder(window=40))
    store.write_many([{"content": long_text()}, {"content": "A short one."}], author="t")
    before = vector_rows(store)
    assert any(r >= CHUNK_BASE for r in before)  # a bulk import cuts long memories too
    store.close()
    # an index.db as it was before windows: no `chunked`, no meta, first vectors only
    conn = connect(tmp_path / "s" / ".somna" / "index.db")
    conn.execute(f"DELETE FROM notes_vec WHERE rowid >= {CHUNK_BASE}")
    conn.execute(f"DELETE FROM vec_bits WHERE rowid >= {CHUNK_BASE}")
    conn.execute("DELETE FROM meta WHERE key = 'vec_chunks'")
    conn.execute("ALTER TABLE notes DROP COLUMN chunked")
    conn.execute("DELETE FROM _migrations WHERE name = '_m6_chunked'")
    conn.commit()
    conn.close()
    again = Store(tmp_path / "s", embedder=HashEmbedder(window=40))
    again.sync()
    assert vector_rows(again) == before
    assert again.backfill_vectors() == 0  # nothing left to cut
    again.close()
    wider = Store(tmp_path / "s", embedder=HashEmbedder(window=80))  # another way of cutting: cut again
    wider.sync()
    extra = [r for r in vector_rows(wider) if r >= CHUNK_BASE]
    assert 0 < len(extra) < len([r for r in before if r >= CHUNK_BASE])


@pytest.mark.slow
def test_a_fact_after_300_words_is_found_by_meaning(tmp_path: Path) -> None:
    embedder = LazyEmbedder()
    assert embedder.wait(120), embedder.error
    text = long_text(330)
    assert text.index(FACT) > len(" ".join(text.split()[:300]))
    store = Store.init(tmp_path / "s", embedder=embedder)
    for i, other in enumerate(FILLER * 2):
        store.write(f"{other} (meeting {i})", author="t", force=True)
    store.write("The billing service retries failed card payments three times.", author="t")
    target = store.write(text, author="t", force=True)
    hits = store.search(QUERY, mode="vectors", limit=3)["hits"]
    assert hits[0]["id"] == target["id"], hits
    # the first vector alone (what the model read before) does not reach the fact
    rowid = store.index.get(target["id"]).rowid  # type: ignore[union-attr]
    qv = embedder.embed([QUERY])[0]
    first_rank = [r for r, _ in store.index.search_vectors(qv, 20, chunks=False)].index(rowid)
    assert first_rank > 0


@pytest.mark.slow
@pytest.mark.anyio
async def test_a_fact_after_300_words_is_found_by_meaning_over_mcp(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    async with mcp_client(store, env={"SOMNA_EMBEDDER": "minilm"}) as s:
        for _ in range(600):  # the model loads in the background: wait for vectors
            if (await call(s, "search", query="anything"))["mode"] == "hybrid":
                break
            await anyio.sleep(0.2)
        # the long memory comes last: a newer memory that restates its first lines would go above it
        for i, other in enumerate(FILLER):
            await call(s, "write", content=f"{other} (meeting {i})", force=True)
        await call(s, "write", content="The billing service retries failed card payments three times.")
        target = await call(s, "write", content=long_text(330))
        out = await call(s, "search", query=DISJOINT, limit=3)
        assert out["mode"] == "hybrid" and out["hits"][0]["id"] == target["id"], [
            (h["id"], h["score"], h["matched"], h["scope"]) for h in out["hits"]
        ]
        assert out["hits"][0]["matched"] == "meaning"
