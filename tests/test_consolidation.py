"""Consolidation on coding-agent memories (issue 14): reworded duplicates are merged, updates with a cue word
supersede even when the older has a detail the newer lacks, look-alikes about another subject stay apart."""

from __future__ import annotations

import numpy as np

from somna.carry import carried, updates_any
from somna.index import Row
from somna.relations import other_subject, relation, specific
from somna.sleep.passes import Snapshot, Thresholds, plan


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
    assert (
        relation("User now wants rebase merges instead of squash.", "User prefers squash merges.")[0]
        == "update"
    )


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
    api = "Local Postgres for ledger-api is on 5433 (5432 is used by the analytics container)."
    assert relation("The analytics container's Postgres listens on port 5432.", api)[0] != "update"


def test_an_update_carries_what_it_does_not_renew_never_the_outdated_value() -> None:
    old = "ledger-api CI: the `integration` job in .github/workflows/ci.yml has timeout-minutes: 30."
    new = "Raised the ledger-api integration job timeout from 30 to 45 minutes."
    assert carried(old, new) == ["`.github/workflows/ci.yml`"]
    assert updates_any(old, new)
    old = "tidewatch consumes the Kafka topic `invoices.v1` as consumer group `tidewatch-prod`."
    new = "tidewatch switched to topic invoices.v2 (the Avro schema with the currency field)."
    assert carried(old, new) == ["`tidewatch-prod`"]
    old = "Start the local stack with `docker compose up -d`. It brings up Postgres, Redis and MinIO."
    assert "It brings up Postgres, Redis and MinIO." in carried(
        old, "The local stack now starts with `make up`."
    )
    # about something else: nothing of the older is renewed, so actions refuse the supersede
    assert not updates_any(
        "Local Postgres for ledger-api is on 5433 (5432 is used by the analytics container).",
        "The analytics container's Postgres listens on port 5432 and is read-only for the ledger-api service.",
    )


def _plan(memories: list[tuple[str, str]], gram: list[list[float]]) -> list[tuple[str, list[str], bool]]:
    rows = [
        Row(k, f"m{k}", "memory", "", text, "note", [], "active", "", at, at, 0, 0, "v", text + "\n", [])
        for k, (text, at) in enumerate(memories)
    ]
    vectors = np.linalg.cholesky(np.array(gram, dtype=np.float64)).astype(np.float32)
    snap = Snapshot(None, rows, vectors, set(range(len(rows))), {})
    return [
        (a.kind, sorted(a.targets), a.sure)
        for a in plan(snap, Thresholds())
        if a.kind in ("merge", "supersede")
    ]


def test_a_cycle_merges_a_rewording_supersedes_an_update_and_leaves_a_look_alike() -> None:
    d1, d2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    memories = [
        ("Use `uv sync --frozen` in the ledger-api Dockerfile so uv.lock is respected.", d1),
        ("Docker builds of ledger-api must run uv sync --frozen; without it uv may rewrite uv.lock.", d2),
        ("harbor-web needs Node 20 (.nvmrc). Run `nvm use` before `pnpm install`.", d1),
        ("harbor-web is on Node 22 now; .nvmrc and the setup-node step in CI both say 22.", d2),
        ("ledger-api unit tests run under pytest-timeout with --timeout=10 seconds per test.", d1),
        ("ledger-api integration tests now run with a per-test --timeout=120.", d2),
    ]
    gram = [[1.0 if a == b else 0.1 for b in range(6)] for a in range(6)]
    for a, b, cos in ((0, 1, 0.8), (2, 3, 0.68), (4, 5, 0.93)):  # a rewording below 0.9; a look-alike above
        gram[a][b] = gram[b][a] = cos
    assert sorted(_plan(memories, gram)) == [("merge", ["m0", "m1"], True), ("supersede", ["m2", "m3"], True)]


def test_an_update_replaces_one_memory_and_what_it_carried_is_not_its_own_words() -> None:
    """A memory that already superseded one (and carries its details, "Kept from ...") is not chained onto
    another in a later cycle: the carried words are not its own, and an update replaces one memory."""
    d0, d1, d2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"
    heir = "Raised the ledger-api integration job timeout from 30 to 45 minutes.\nKept from m2: `.github/workflows/ci.yml`."
    texts = [
        (heir, d2),
        (
            "ledger-api CI: the integration job retries flaky tests in .github/workflows/ci.yml up to 2 times.",
            d1,
        ),
        ("ledger-api CI: the integration job has timeout-minutes: 30.", d0),
    ]
    rows = [
        Row(
            k,
            f"m{k}",
            "memory",
            "",
            text.splitlines()[0],
            "note",
            [],
            "superseded" if k == 2 else "active",
            "",
            at,
            at,
            0,
            0,
            "v",
            text + "\n",
            [],
            successor="m0" if k == 2 else "",
        )  # fmt: skip
        for k, (text, at) in enumerate(texts)
    ]
    gram = np.array([[1.0, 0.75, 0.8], [0.75, 1.0, 0.7], [0.8, 0.7, 1.0]])
    vectors = np.linalg.cholesky(gram).astype(np.float32)
    snap = Snapshot(None, rows, vectors, {0, 1}, {})
    assert "Kept from" not in snap.text(0) and ".github/workflows/ci.yml" not in snap.text(0)
    made = [a for a in plan(snap, Thresholds()) if a.kind == "supersede" and not a.data.get("judge_only")]
    assert not [a for a in made if "m1" in a.targets]  # (a question for an LLM judge, at most)


def test_rewordings_are_judged_in_time_order_and_below_the_cosine_when_no_value_is_added() -> None:
    d1, d2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    memories = [
        # the newer first in the snapshot: the older's "instead" is no cue of change said by the newer
        (
            "Flaky test test_webhook_retry_backoff depends on a real time.sleep. Freeze time with freezegun "
            "(@freeze_time) and tick it by hand to make it deterministic.",
            d2,
        ),  # fmt: skip
        (
            "test_webhook_retry_backoff is flaky because it sleeps on the wall clock; use freezegun instead of "
            "real time.",
            d1,
        ),  # fmt: skip
        # the same advice in other words, neither pinning down a value the other lacks: merged at 0.7
        (
            "Check #deploys in Slack before investigating a prod alert; there may be a rollout in progress.",
            d1,
        ),
        (
            "Prod alert? Look at the #deploys channel first. Half of our alerts are caused by a rollout that is "
            "still going.",
            d2,
        ),  # fmt: skip
        # alike at 0.7 too, but one adds values the other lacks: a look-alike, left apart
        ("ledger-api unit tests run under pytest-timeout with --timeout=10 seconds per test.", d1),
        ("ledger-api's `unit` CI job has timeout-minutes: 10; if it hits that, something is hanging.", d2),
    ]
    gram = [[1.0 if a == b else 0.1 for b in range(6)] for a in range(6)]
    for a, b, cos in ((0, 1, 0.95), (2, 3, 0.7), (4, 5, 0.7)):
        gram[a][b] = gram[b][a] = cos
    assert sorted(_plan(memories, gram)) == [("merge", ["m0", "m1"], True), ("merge", ["m2", "m3"], True)]


def test_a_number_spelled_out_is_the_same_value() -> None:
    old = "Review convention: a PR needs one approval and green CI; the author merges, not the reviewer."
    new = "On this team the PR author merges after 1 approval + passing CI."
    assert relation(new, old) == ("duplicate", "the same claim")
    assert relation("Deploys need 2 approvals.", "Deploys need one approval.")[0] != "duplicate"


def test_a_number_with_another_unit_is_no_former_value() -> None:
    """The learning curve once saw "Metabase moved to port 3030" supersede the vitest timeout of 5000 ms: both
    four digits, one a port, the other milliseconds. A number said in another unit is no older value."""
    vitest = (
        "harbor-web vitest unit tests: the per-test timeout is 5000 ms (testTimeout in vitest.config.ts)."
    )
    metabase = "Metabase moved to port 3030: harbor-web's next dev server grabs 3001 whenever 3000 is busy."
    assert relation(metabase, vitest)[0] != "update"
    assert relation(metabase, "Metabase for the analytics stack is on http://localhost:3001.")[0] == "update"
