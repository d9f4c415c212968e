"""The duplicate check on write: two texts that differ in a number, a version, a path, an identifier or the
order of their values are two memories; a real paraphrase is still refused with the id of what it repeats.
One measure (`relations.differ`) for the store and sleep-time."""

from __future__ import annotations

from pathlib import Path

import pytest

from somna.embeddings import HashEmbedder
from somna.errors import DuplicateFound
from somna.relations import differ
from somna.store import Store


@pytest.fixture(params=["vectors", "words"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A store whose duplicate check runs on vectors (a model loaded) or on words (none)."""
    embedder = HashEmbedder() if request.param == "vectors" else None
    return Store.init(tmp_path / "store", embedder=embedder)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("The staging database listens on port 5432.", "The staging database listens on port 5433."),
        ("Use Python 3.11 for the api service.", "Use Python 3.12 for the api service."),
        ("hammer writer 1 item 3 unique-1-3", "hammer writer 3 item 1 unique-3-1"),
        (
            "Deploy staging with scripts/deploy-v1.sh from the repo root.",
            "Deploy staging with scripts/deploy-v2.sh from the repo root.",
        ),  # fmt: skip
        (
            "Feature flag new_checkout gates the checkout page.",
            "Feature flag old_checkout gates the checkout page.",
        ),
    ],
)
def test_a_text_that_differs_in_a_value_or_its_order_is_written(store: Store, old: str, new: str) -> None:
    first = store.write(old, author="agent")
    second = store.write(new, author="agent")  # no force: not refused
    assert second["id"] != first["id"]
    assert (
        store.read(first["id"])["content"].strip() == old
        and store.read(second["id"])["content"].strip() == new
    )


def test_a_new_value_for_what_a_memory_says_is_written_and_marked_as_its_likely_update(store: Store) -> None:
    said = "The staging database of the ledger api listens on port {} inside the compose network."
    first = store.write(said.format(5432), author="agent")
    second = store.write(said.format(5433), author="agent")
    assert second["likely_update_of"] == first["id"]
    assert first["id"] in second["note"] and "supersede" in second["note"]


def test_a_real_paraphrase_is_still_refused_with_the_id_it_repeats(store: Store) -> None:
    first = store.write("Run the linter with `ruff check src tests` before pushing to main.", author="agent")
    with pytest.raises(DuplicateFound) as err:
        store.write("Before pushing to main, run the linter with `ruff check src tests`.", author="agent")
    assert err.value.duplicate_id == first["id"] and first["id"] in str(err.value)


def test_the_measure_says_why() -> None:
    assert differ("port 5432", "port 5433") and "5432" in (differ("port 5432", "port 5433") or "")
    assert (
        differ("writer 1 item 3", "writer 3 item 1")
        == "the same values in another order: ['1', '3'] vs ['3', '1']"
    )
    assert differ("Run `make lint` before pushing.", "Before pushing, run `make lint`.") is None
    assert differ("Node 20 for the frontend.", "The frontend uses Node 20.") is None
