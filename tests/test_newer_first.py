"""A correction that sleep-time has not paired yet never ranks below the stale memory it replaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from somna import search
from somna.embeddings import HashEmbedder
from somna.store import Store
from somna.text import corrects, same_frame

OLD = "The catalog service cache TTL is 300 seconds in production."
NEW = "The catalog service cache TTL is 900 seconds in production."


def note(root: Path, name: str, text: str, created: str) -> None:
    (root / "memory" / f"{name}.md").write_text(
        f"---\nid: {name}\ntitle: {text}\ncreated: '{created}'\nupdated: '{created}'\n---\n{text}\n",
        encoding="utf-8",
    )


def order(tmp_path: Path, created_300: str, created_900: str) -> list[str]:
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        note(store.root, "ttl-300", OLD, created_300)
        note(store.root, "ttl-900", NEW, created_900)
        note(
            store.root,
            "other",
            "The billing API rate limit is 100 requests per minute.",
            "2026-01-01T00:00:00Z",
        )
        store.sync()
        hits = store.search("catalog cache TTL production", limit=5)["hits"]
        words = store.search("catalog cache TTL production", limit=5, mode="words")["hits"]
        assert {h["id"] for h in words} >= {"ttl-300", "ttl-900"}
        return [h["id"] for h in hits if h["id"].startswith("ttl-")]
    finally:
        store.close()


def test_the_newer_of_two_near_identical_memories_ranks_first(tmp_path: Path) -> None:
    assert order(tmp_path / "a", "2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z") == ["ttl-900", "ttl-300"]
    assert order(tmp_path / "b", "2026-03-01T00:00:00Z", "2026-01-01T00:00:00Z") == ["ttl-300", "ttl-900"]


def ranked(tmp_path: Path, older: str, newer: str, query: str) -> list[str]:
    """The two memories' order for `query`; written long ago two months apart, so that the recency boost is
    the same for both and, without newer-first, the older ranks first (ids break ties)."""
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        note(store.root, "a-older", older, "2020-01-01T00:00:00Z")
        note(store.root, "z-newer", newer, "2020-03-01T00:00:00Z")
        note(
            store.root,
            "other",
            "The billing API rate limit is 100 requests per minute.",
            "2020-01-01T00:00:00Z",
        )
        store.sync()
        words = [h["id"] for h in store.search(query, limit=5, mode="words")["hits"]]
        assert words.index("a-older") < words.index("z-newer")  # the words alone rank the older first
        return [h["id"] for h in store.search(query, limit=5)["hits"] if h["id"] != "other"]
    finally:
        store.close()


def test_another_value_for_the_same_slot_ranks_first(tmp_path: Path) -> None:
    assert ranked(
        tmp_path,
        "Deploys of the Atlas gateway go through GitHub Actions.",
        "Deploys of the Atlas gateway go through the Buildkite pipeline.",
        "how are Atlas gateway deploys run",
    ) == ["z-newer", "a-older"]


def test_a_correction_about_the_same_person_ranks_first(tmp_path: Path) -> None:
    assert ranked(
        tmp_path,
        "Maria Lopez reviews all database migrations.",
        "Maria Lopez no longer reviews all the database migrations.",
        "who reviews database migrations",
    ) == ["z-newer", "a-older"]


def test_a_newer_fact_about_the_same_person_that_corrects_nothing_stays_below(tmp_path: Path) -> None:
    # same person, related (cosine >= 0.5), words in common: being newer is not enough to rank first
    # (letta-facts written one at a time: that moved a newer fact above the answer for 13% of the questions)
    older = "Maria Lopez reviews database migrations for the billing service."
    for n, newer in enumerate(
        (
            "Maria Lopez wrote the retry policy for the billing service database.",
            "Maria Lopez owns the billing service database schema.",
        )
    ):
        assert ranked(tmp_path / str(n), older, newer, "Maria Lopez billing service database migrations") == [
            "a-older",
            "z-newer",
        ]


def test_same_frame_and_corrects() -> None:
    assert not same_frame("Ann Weber leads the payments team.", "Ann Weber leads the payments team.")
    assert same_frame(
        "Ann Weber is the tech lead of the payments team.", "Ann Weber is the tech lead of the search team."
    )
    # two words after the name are not a slot: "leads the" opens "leads the book club" too
    assert not same_frame("Ann Weber leads the payments team.", "Ann Weber leads the search team.")
    assert not same_frame("Ann Weber leads the payments team.", "Ann Weber enjoys hiking in the Alps.")
    assert same_frame("The API runs on port 8080.", "The API runs on port 9090.")
    assert not same_frame(
        "The API runs on Kubernetes.", "The API runs on port 9090."
    )  # "the api runs on": 2 words
    # a date heading is no subject: two turns of one conversation do not fill one slot
    assert not same_frame("2023/05/20 (Sat) 14:02 · user\nI went", "2023/05/20 (Sat) 14:03 · assistant\nYou")
    assert corrects("Ann Weber no longer leads the payments team.", "Ann Weber leads the payments team.")
    assert not corrects("Ann Weber leads the payments team.", "Ann Weber no longer leads the payments team.")


def superseded(root: Path, name: str, text: str, by: str, created: str = "2020-01-01T00:00:00Z") -> None:
    (root / "memory" / f"{name}.md").write_text(
        f"---\nid: {name}\ntitle: {text}\ncreated: '{created}'\nupdated: '{created}'\nstatus: superseded\n"
        f"superseded_by: {by}\n---\n{text}\n",
        encoding="utf-8",
    )


STAGING_OLD = "The staging database host is pg-staging-1 on port 5432."
STAGING_NEW = "Staging moved to the managed Aurora cluster; connect through the bastion."


def staging_store(root: Path) -> Store:
    store = Store.init(root, embedder=HashEmbedder())
    superseded(store.root, "pg-staging", STAGING_OLD, by="aurora-staging")
    note(store.root, "aurora-staging", STAGING_NEW, "2020-03-01T00:00:00Z")
    note(
        store.root,
        "pg-billing",
        "The billing database host is pg-billing-2 on port 5433.",
        "2020-01-01T00:00:00Z",
    )
    for n in range(20):
        note(
            store.root,
            f"other-{n}",
            f"Service {n} logs go to the shared Loki instance.",
            "2020-01-01T00:00:00Z",
        )
    store.sync()
    return store


def test_a_correction_takes_the_rank_of_what_it_superseded(tmp_path: Path) -> None:
    """The question that found the stale fact finds its correction, however differently the correction is
    worded: a superseded memory that matches hands its rank to the memory that replaced it."""
    store = staging_store(tmp_path)
    try:
        query = "staging database host port"
        found = store.index.search_words(query, 3)
        by_rowid = store.index.rows([rowid for rowid, _, _ in found])
        words = [by_rowid[rowid].id for rowid, _, _ in found]
        assert words[:2] == [
            "pg-staging",
            "pg-billing",
        ]  # the words point at the stale fact, not its correction
        hits = store.search(query, limit=3)["hits"]
        assert hits[0]["id"] == "aurora-staging" and hits[0]["replaces"] == ["pg-staging"]
        assert "pg-staging" not in [h["id"] for h in hits] and "replaces" not in hits[1]
        # a chain of corrections ends at what holds now
        superseded(
            store.root, "aurora-staging", STAGING_NEW, by="staging-k8s", created="2020-03-01T00:00:00Z"
        )
        note(
            store.root,
            "staging-k8s",
            "Staging runs in the k8s namespace stg; ask #infra for access.",
            "2020-05-01T00:00:00Z",
        )
        store.sync()
        hits = store.search(query, limit=3)["hits"]
        # both links of the chain match the query ("staging"), and each scores above what holds now on its
        # own: it takes the rank of each, the middle link's first (one hop), then the stale fact's (two)
        assert hits[0]["id"] == "staging-k8s" and hits[0]["replaces"] == ["aurora-staging", "pg-staging"]
        assert not {"aurora-staging", "pg-staging"} & {h["id"] for h in hits}
    finally:
        store.close()


def test_an_index_from_before_learns_the_successors(tmp_path: Path) -> None:
    """Index migration 5 adds the successor column; rows already superseded are read from their files
    again at the next sync, so an upgraded store hands ranks on at once."""
    import sqlite3

    store = staging_store(tmp_path)
    store.close()
    conn = sqlite3.connect(tmp_path / ".somna" / "index.db")
    conn.execute("ALTER TABLE notes DROP COLUMN successor")
    conn.execute("DELETE FROM _migrations WHERE n = 5")
    conn.commit()
    conn.close()
    store = Store(tmp_path, embedder=HashEmbedder())
    try:
        hits = store.search("staging database host port", limit=3)["hits"]
        assert hits[0]["id"] == "aurora-staging" and hits[0]["replaces"] == ["pg-staging"]
    finally:
        store.close()


def long_note(root: Path, name: str, title: str, body: str, created: str) -> None:
    (root / "memory" / f"{name}.md").write_text(
        f"---\nid: {name}\ntitle: '{title}'\ncreated: '{created}'\nupdated: '{created}'\n---\n{title}\n{body}\n",
        encoding="utf-8",
    )


MUSEUM = (
    "I was thinking about my recent visit to the Science Museum with my sister and how much we enjoyed the "
    "space exhibition there. We spent the whole afternoon in the planetarium and the rocket hall, and I "
    "would like to find similar exhibitions in the city for next month, ideally ones that run late on "
    "weekends so that we can go after work."
)
MUSEUM_REPLY = (
    "Your recent visit to the Science Museum with your sister sounds like a wonderful afternoon in the space "
    "exhibition, the planetarium and the rocket hall. To find similar exhibitions in the city for next "
    "month that run late on weekends, so that you can go after work, check the museum websites: not all of "
    "them list their late openings."
)


def test_turns_of_one_conversation_do_not_reorder_each_other(tmp_path: Path) -> None:
    """Long memories are not one claim each: a later turn of the same conversation that names the same
    place and says "not" somewhere is no correction of the earlier turn, and a heading that is a date
    ("2023/05/20 (Sat) 14:02 · user") is no shared subject."""
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        long_note(store.root, "a-turn", "2023/05/20 (Sat) 14:02 · user", MUSEUM, "2020-01-01T00:00:00Z")
        long_note(
            store.root, "b-reply", "2023/05/20 (Sat) 14:03 · assistant", MUSEUM_REPLY, "2020-01-01T00:00:01Z"
        )
        store.sync()
        query = "who did I visit the Science Museum with, my sister?"
        words = [h["id"] for h in store.search(query, limit=5, mode="words")["hits"]]
        assert words == ["a-turn", "b-reply"]
        assert [h["id"] for h in store.search(query, limit=5)["hits"]] == ["a-turn", "b-reply"]
    finally:
        store.close()


def test_a_later_turn_that_restates_an_earlier_one_does_not_jump_above_it(tmp_path: Path) -> None:
    """Two long turns alike in meaning (a person telling the same story again, weeks later) are no
    correction of each other: the near-duplicate rule is for claims, not for turns of a conversation, and
    lifting later turns over earlier ones cost 0.03 of MRR@10 on LongMemEval-S's tuning half."""
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        long_note(store.root, "a-turn", "2023/05/20 (Sat) 14:02 · user", MUSEUM, "2020-01-01T00:00:00Z")
        again = "As I said before, " + MUSEUM.replace("with my sister", "with my sis")
        long_note(store.root, "b-again", "2023/06/24 (Sat) 09:12 · user", again, "2020-02-01T00:00:00Z")
        store.sync()
        vectors = store.embedder.embed([MUSEUM, again])  # type: ignore[union-attr]
        assert sum(a * b for a, b in zip(*vectors, strict=True)) >= search.NEWER_FIRST_SIMILAR
        query = "who did I visit the Science Museum with, my sister?"
        assert [h["id"] for h in store.search(query, limit=5, mode="words")["hits"]] == ["a-turn", "b-again"]
        assert [h["id"] for h in store.search(query, limit=5)["hits"]] == ["a-turn", "b-again"]
    finally:
        store.close()


def test_a_newer_value_far_below_stays_where_it_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Newer-first moves a hit up over close neighbours only (at most NEWER_FIRST_PLACES places): another
    value for the same slot that the query matches worse than eight other memories stays below them."""
    store = Store.init(tmp_path, embedder=HashEmbedder())
    try:
        note(
            store.root,
            "a-older",
            "Deploys of the Atlas gateway go through GitHub Actions.",
            "2020-01-01T00:00:00Z",
        )
        note(
            store.root,
            "z-newer",
            "Deploys of the Atlas gateway go through the Buildkite pipeline.",
            "2020-03-01T00:00:00Z",
        )
        for n in range(8):
            note(
                store.root,
                f"m-{n}",
                f"GitHub Actions job {n} checks the Atlas gateway build.",
                "2020-01-01T00:00:00Z",
            )
        for n in range(20):
            note(
                store.root,
                f"other-{n}",
                f"The billing API rate limit is {n} requests per minute.",
                "2020-01-01T00:00:00Z",
            )
        store.sync()
        query = "Atlas gateway deploys GitHub Actions"
        ids = [h["id"] for h in store.search(query, limit=12)["hits"]]
        assert ids.index("z-newer") > ids.index("a-older") + search.NEWER_FIRST_PLACES
        monkeypatch.setattr(search, "NEWER_FIRST_PLACES", 50)  # at any distance it would go above the older
        ids = [h["id"] for h in store.search(query, limit=12)["hits"]]
        assert ids.index("z-newer") == ids.index("a-older") - 1
    finally:
        store.close()
