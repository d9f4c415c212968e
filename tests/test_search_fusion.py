"""How search fuses its two sides: by scores, each side divided by its best, so a memory that one side finds
far better than the rest is not buried under memories both sides find middling (as rank fusion did); and
the query's successive words are asked for as phrases too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from somna import search
from somna.embeddings import HashEmbedder
from somna.fusion import fuse_scores, rrf, word_pairs
from somna.store import Store


def test_score_fusion_keeps_what_one_side_finds_far_ahead() -> None:
    # the words find memory 1 far ahead of the rest; the vectors' list, cut at 8, finds 2..9 a little alike
    # and lacks 1 (so 1 is no closer in meaning than the last of them)
    words = [(1, 9.0)] + [(n, 2.0) for n in range(2, 10)]
    vectors = [(n, 0.40 - n / 1000) for n in range(2, 10)]
    fused = fuse_scores(words, vectors, missing=(0.0, vectors[-1][1]))
    assert max(fused, key=lambda r: fused[r]) == 1
    ranks = rrf([[r for r, _ in words], [r for r, _ in vectors]])
    assert max(ranks, key=lambda r: ranks[r]) != 1  # rank fusion puts the agreement of middling ones first
    # counted as 0 by meaning (as if nothing were closer than the list's last), 1 loses the vectors' weight
    fused = fuse_scores(words, vectors)
    assert max(fused, key=lambda r: fused[r]) != 1


def test_score_fusion_follows_either_side_when_the_other_is_silent() -> None:
    assert fuse_scores([(1, 3.0), (2, 1.5)], []) == {1: 0.5, 2: 0.25}
    assert fuse_scores([(1, 3.0)], [(2, 0.8)], missing=(1.5, 0.4)) == pytest.approx({1: 0.75, 2: 0.75})
    assert fuse_scores([], [(1, 0.8), (2, 0.4)], words_weight=0.7) == pytest.approx({1: 0.3, 2: 0.15})


def test_word_pairs_leave_out_question_words() -> None:
    assert word_pairs("Where did I get my guitar serviced?") == ["get guitar", "guitar serviced"]
    assert word_pairs("how many did I") == []


def note(root: Path, name: str, text: str) -> None:
    (root / "memory" / f"{name}.md").write_text(
        f"---\nid: {name}\ntitle: {text}\ncreated: '2020-01-01T00:00:00Z'\n---\n{text}\n", encoding="utf-8"
    )


def test_a_memory_with_the_query_words_side_by_side_ranks_first(tmp_path: Path) -> None:
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        # the same words, the same length: only the order differs ("a-" sorts first on a tie)
        note(store.root, "a-apart", "The database for staging listens on port 5432.")
        note(store.root, "b-side-by-side", "The staging database listens on port 5432 now.")
        note(store.root, "other", "The billing API rate limit is 100 requests per minute.")
        store.sync()
        query = "which port does the staging database listen on"
        assert [h["id"] for h in store.search(query, limit=2, mode="words")["hits"]] == [
            "b-side-by-side",
            "a-apart",
        ]
        without = dataclasses.replace(search.RANKING, pairs=False)
        old, search.RANKING = search.RANKING, without
        try:
            assert store.search(query, limit=1, mode="words")["hits"][0]["id"] == "a-apart"
        finally:
            search.RANKING = old
    finally:
        store.close()


def test_an_exact_match_on_rare_words_stays_first_among_many_vaguely_alike(tmp_path: Path) -> None:
    """A store of a hundred notes that share a few of the question's common words (both sides find them
    middling) and one that answers it with the question's rare words (the words side finds it far ahead;
    the vectors, which read many other words in it, hardly at all)."""
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        for n in range(100):
            note(store.root, f"n{n:03d}", f"Note {n}, the team meeting about the schedule of project {n}.")
        note(
            store.root,
            "answer",
            "Quarterly zephyr rotation, Ines takes it after Bao; handover notes live in the wiki under "
            "oncall, the pager number is in the vault, and escalation goes to the platform lead.",
        )
        store.sync()
        query = "who takes the zephyr rotation after the team meeting"
        hits = store.search(query, limit=10)["hits"]
        assert hits[0]["id"] == "answer"
        old, search.RANKING = search.RANKING, dataclasses.replace(search.RANKING, fusion="rrf")
        try:
            rrf_ids = [h["id"] for h in store.search(query, limit=10)["hits"]]
        finally:
            search.RANKING = old
        assert rrf_ids[0] != "answer"  # what rank fusion did
    finally:
        store.close()
