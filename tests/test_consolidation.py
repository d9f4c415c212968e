"""Consolidation on coding-agent memories (issue 14): reworded duplicates are merged, updates with a cue word
supersede even when the older has a detail the newer lacks, look-alikes about another subject stay apart."""

from __future__ import annotations

from somna.relations import other_subject, relation, specific


def test_a_reworded_duplicate_is_the_same_claim() -> None:
    old = "Always run `make lint` before pushing ledger-api; CI rejects any ruff format diff."
    new = "Before pushing ledger-api changes, run make lint: the CI lint step fails on any ruff format difference."
    assert relation(new, old)[0] == "duplicate"
    assert specific(old, new) == {"make lint"}
    # one adds a detail: still the same claim (a merge keeps it)
    assert relation("To get a clean local DB: make db-reset. It also loads scripts/seed.py.",
                    "Reset the local database with `make db-reset`.")[0] == "duplicate"  # fmt: skip


def test_an_update_with_a_cue_word_is_an_update_even_with_a_detail_left_behind() -> None:
    old = "tidewatch consumes the Kafka topic `invoices.v1` as consumer group `tidewatch-prod`."
    new = "tidewatch switched to topic invoices.v2 (the Avro schema with the currency field)."
    assert relation(new, old)[0] == "update"
    old = "ledger-api CI: the `integration` job in .github/workflows/ci.yml has timeout-minutes: 30."
    new = "Raised the ledger-api integration job timeout from 30 to 45 minutes."
    assert relation(new, old)[0] == "update"
    assert relation("User now wants rebase merges instead of squash.", "User prefers squash merges.")[0] == "update"


def test_look_alikes_about_another_subject_or_attribute_stay_apart() -> None:
    unit = "ledger-api unit tests run under pytest-timeout with --timeout=10 seconds per test."
    integration = "ledger-api integration tests now run with a per-test --timeout=120."
    assert relation(integration, unit) == ("apart", "integration tests vs unit tests")
    assert other_subject(integration, unit) == "integration tests vs unit tests"
    assert relation("harbor-web Storybook: `pnpm storybook` on port 6006.",
                    "harbor-web dev server: `pnpm dev` on port 3000.")[0] == "apart"  # fmt: skip
    assert relation("tidewatch keeps its dedup keys in Redis db 2 on localhost:6379.",
                    "ledger-api uses Redis on localhost:6379, db 0.")[0] == "apart"  # fmt: skip
    # a new value that the older already has is no update: the analytics port is no update of the api's
    assert relation("The analytics container's Postgres listens on port 5432.",
                    "Local Postgres for ledger-api is on 5433 (5432 is used by the analytics container).")[0] != "update"  # fmt: skip
