"""Vector search over binary-quantized pre-selection + exact re-scoring agrees with sqlite-vec's exact scan,
stays in step with writes from another connection, and an index.db from before vec_bits keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

import somna.index as somna_index
import somna.vectors as somna_vectors
from somna import notes
from somna.embeddings import HashEmbedder
from somna.store import Store

TOPICS = ["billing", "retry", "cache", "deploy", "schema", "token", "queue", "index", "shard", "lint"]
VERBS = ["fails", "times out", "needs a restart", "is slow", "drops rows", "leaks memory"]


def facts(n: int, seed: int = 0) -> list[dict[str, str]]:
    return [
        {
            "content": f"The {TOPICS[(i + seed) % 10]} job {VERBS[(i * 7 + seed) % 6]} when worker {i % 13} "
            f"handles batch {i} of region {i % 5}; fix {i * 31 % 97} applies."
        }
        for i in range(n)
    ]


def exact(store: Store, vec: list[float], k: int) -> list[tuple[int, float]]:
    store.index.binary_min = 10**9
    try:
        return store.index.search_vectors(vec, k)
    finally:
        store.index.binary_min = 0


@pytest.fixture
def big(tmp_path: Path) -> Store:
    s = Store.init(tmp_path / "store", embedder=HashEmbedder())
    s.write_many(facts(300), author="test")
    s.index.binary_min = 0
    return s


def test_binary_preselection_with_full_rescore_equals_exact(big: Store) -> None:
    emb = big.embedder
    assert emb is not None
    for query in ("billing job times out", "worker 7 leaks memory", "schema drops rows in region 3"):
        vec = emb.embed([query])[0]
        got = big.index.search_vectors(vec, 20)  # 300 vectors < RESCORE_MIN: every one is re-scored
        want = exact(big, vec, 20)
        assert [r for r, _ in got] == [r for r, _ in want] or [round(s, 5) for _, s in got] == [
            round(s, 5) for _, s in want
        ]
        assert [round(s, 5) for _, s in got] == [round(s, 5) for _, s in want]


def test_binary_preselection_finds_the_exact_top_hits(big: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(somna_vectors, "RESCORE_MIN", 100)
    monkeypatch.setattr(somna_vectors, "RESCORE_FACTOR", 1)
    emb = big.embedder
    assert emb is not None
    overlap = []
    for query in (
        "billing job fails",
        "cache needs a restart",
        "token is slow for worker 3",
        "queue shard lint",
    ):
        vec = emb.embed([query])[0]
        got = {r for r, _ in big.index.search_vectors(vec, 10)}
        want = {r for r, _ in exact(big, vec, 10)}
        overlap.append(len(got & want) / 10)
    assert sum(overlap) / len(overlap) >= 0.7, overlap


def test_search_sees_writes_made_through_another_connection(big: Store, tmp_path: Path) -> None:
    emb = big.embedder
    assert emb is not None
    vec = emb.embed(["zebra crossing painted purple"])[0]
    before = big.index.search_vectors(vec, 1)  # loads the bits into memory
    other = Store(big.root, embedder=HashEmbedder())
    [new_id] = other.write_many([{"content": "zebra crossing painted purple"}], author="test")
    other.close()
    after = big.index.search_vectors(vec, 1)
    assert after != before
    assert big.index.get(new_id).rowid == after[0][0]  # type: ignore[union-attr]
    assert after[0][1] > 0.9  # the embedded text is title + body, the same words twice


def test_index_without_vec_bits_is_upgraded_on_open(big: Store) -> None:
    root = big.root
    conn = big.index.conn
    conn.execute("DROP TABLE vec_bits")
    conn.execute("DELETE FROM meta WHERE key IN ('vec_bits', 'vec_gen')")
    big.close()
    again = Store(root, embedder=HashEmbedder())
    again.index.binary_min = 0
    hits = again.search("billing job times out", mode="vectors")["hits"]
    assert (
        hits
        and again.index.get_meta("vec_bits")
        == f"{again.index.get_meta('vec_model')}|{somna_vectors.VEC_BITS_SCHEMA}"
    )
    n_bits = again.index.conn.execute("SELECT count(*) FROM vec_bits").fetchone()[0]
    assert n_bits == again.index.vector_count() >= 300
    again.close()


def test_words_common_to_most_rows_leave_the_query_without_changing_the_ranking(tmp_path: Path) -> None:
    s = Store.init(tmp_path / "store", embedder=None)
    s.write_many(
        [{"content": f"the note {i} about {TOPICS[i % 10]} and the worker {i % 7}"} for i in range(1200)],
        author="test",
    )
    s.ensure_synced()
    query = "the billing worker 3"
    assert s.index._fts_match(query) == '"billing" OR "3"'  # "the" and "worker" are in every row
    # a pair of words is asked for as a phrase only when both of its words are
    assert s.index._fts_match(query, ["billing worker", "billing 3"]) == '"billing" OR "3" OR "billing 3"'
    full = [
        (r, round(x, 4))
        for r, x in (
            (r, -score)
            for r, score in s.index.conn.execute(
                "SELECT rowid, bm25(notes_fts, 3.0, 1.0, 2.0) FROM notes_fts WHERE notes_fts MATCH ? "
                "ORDER BY bm25(notes_fts, 3.0, 1.0, 2.0) LIMIT 40",
                (somna_index.fts_query(query),),
            )
        )
    ]
    pruned = [(r, round(x, 4)) for r, x, _ in s.index.search_words(query, 40)]
    assert [x for _, x in pruned][:10] == [x for _, x in full][:10]
    hits = s.search(query, mode="words")["hits"]
    assert hits and all(h["snippet"] for h in hits)


def test_an_index_from_before_embed_text_re_embeds_what_it_embedded_with_the_title_twice(
    tmp_path: Path,
) -> None:
    emb = HashEmbedder()
    s = Store.init(tmp_path / "store", embedder=emb)
    repeated = s.write("Deploys need --force after a lockfile change.", author="t")[
        "id"
    ]  # title = first line
    titled = s.write("Run migrations before the deploy.", title="Deploy order", author="t")["id"]
    conn = s.index.conn
    with conn:  # the index as somna wrote it before migration 4: title and body embedded together
        for rowid, title, body in conn.execute("SELECT rowid, title, body FROM notes").fetchall():
            old = notes.content_hash(f"{title}\n{body}")
            conn.execute("UPDATE notes SET text_hash = ? WHERE rowid = ?", (old, rowid))
        conn.execute("DELETE FROM _migrations WHERE n = 4")
    s.close()
    again = Store(tmp_path / "store", embedder=emb)
    # only notes whose embedded text changed lost their vectors: the one with a title of its own kept it
    assert again.index.vector_count() == again.index.count() - 1
    assert again.backfill_vectors() == 1
    rows = {r.id: r for r in again.index.all_rows()}
    vecs = again.index.vectors([rows[repeated].rowid, rows[titled].rowid])
    want = emb.embed(
        ["Deploys need --force after a lockfile change.", "Deploy order\nRun migrations before the deploy."]
    )
    assert vecs[rows[repeated].rowid] == pytest.approx(want[0], abs=1e-6)
    assert vecs[rows[titled].rowid] == pytest.approx(want[1], abs=1e-6)
    assert again.search("lockfile force", mode="vectors")["hits"][0]["id"] == repeated
    again.close()


def test_embed_text_keeps_a_title_that_adds_words_and_drops_one_that_repeats() -> None:
    assert notes.embed_text("Port", "The API listens on 8080.") == "Port\nThe API listens on 8080."
    assert (
        notes.embed_text("The API listens on 8080.", "The API listens on 8080.\nmore")
        == "The API listens on 8080.\nmore"
    )
    assert notes.embed_text("", "body") == "body"
    assert (
        notes.embed_text("Deploy order", "# Deploy order\n\nMigrations first.")
        == "# Deploy order\n\nMigrations first."
    )


def test_old_model_exports_are_pruned_and_the_one_in_use_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each export of the embedding model is ~90 MB; one that no somna loaded for 30 days (a reinstalled or
    upgraded model package leaves its export behind) goes when another export is made."""
    import os
    import time

    from somna import onnx_model

    monkeypatch.setenv("SOMNA_CACHE", str(tmp_path / "cache"))
    folders = {}
    for name, age_days in (("in-use", 90), ("stale", 31), ("recent", 2), ("other-venv", 29)):
        folders[name] = tmp_path / "cache" / "onnx" / name
        folders[name].mkdir(parents=True)
        model = folders[name] / "model.onnx"
        model.write_bytes(b"x")
        then = time.time() - age_days * 86400
        os.utime(model, (then, then))
        os.utime(folders[name], (then, then))
    for name, age_days in (("killed", 40), ("exporting", 0)):  # an export killed midway; one being made now
        tmp = tmp_path / "cache" / "onnx" / name / ".model.onnx.123.tmp"
        tmp.parent.mkdir()
        tmp.write_bytes(b"x")
        then = time.time() - age_days * 86400
        os.utime(tmp, (then, then))
        os.utime(tmp.parent, (then, then))
    onnx_model.touch(folders["in-use"] / "model.onnx")  # loaded just now
    removed = onnx_model.prune(keep=folders["recent"] / "model.onnx")
    assert sorted(p.name for p in removed) == ["killed", "stale"]
    assert (
        all(folders[n].is_dir() for n in ("in-use", "recent", "other-venv")) and not folders["stale"].exists()
    )
    assert (tmp_path / "cache" / "onnx" / "exporting" / ".model.onnx.123.tmp").is_file()
