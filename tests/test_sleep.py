"""Sleep-time cycles: merge without loss, supersede the stale, stay put when nothing changed, never lose a write."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from somna.embeddings import HashEmbedder
from somna.sleep.cycle import Cycle, decide, pending
from somna.sleep.details import conflict, details, merge_texts, missing
from somna.store import Store

# The hashing embedder is cruder than MiniLM: paraphrases score lower, so the thresholds are set for it.
TOML = '[sleep.thresholds]\nduplicate = 0.55\ncontradiction = 0.5\nsure = 0.6\nlink = 0.45\n'

DUPLICATES = [
    ("Run the unit tests with pytest -x so the run stops at the first failure.",
     "Run the unit tests with pytest -x so the run stops at the first failure; the timeout is 300 s.", "300 s"),
    ("The dev database listens on port 5433, not the default port.",
     "The dev database listens on port 5433, not the default port; see config/db.toml.", "config/db.toml"),
    ("Build the docs with mkdocs build before publishing the docs site.",
     "Build the docs with mkdocs build --strict before publishing the docs site.", "--strict"),
]


@pytest.fixture
def sleepy(tmp_path: Path) -> Store:
    root = tmp_path / "s"
    Store.init(root).close()
    (root / "somna.toml").write_text(TOML, encoding="utf-8")
    return Store(root, embedder=HashEmbedder())


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def test_details_and_conflicts() -> None:
    d = details("Set PG_PORT=5433 in config/db.toml and run `make db` with --fresh")
    assert {"5433"} <= d.numbers and "config/db.toml" in d.paths and "--fresh" in d.flags and "make db" in d.code
    assert conflict("Ann Lee leads the payments team.", "Bob Stone leads the payments team.")
    assert conflict("The cache TTL is 300 seconds.", "The cache TTL is 600 seconds.")
    assert conflict("Retries are safe for GET requests here.", "Retries are not safe for GET requests here.")
    assert conflict("Use port 5433.", "Use port 5433; see config/db.toml.") is None
    merged = merge_texts([a for a, _, _ in DUPLICATES[:1]] + [DUPLICATES[0][1]])
    assert not missing(merged, details(DUPLICATES[0][1]).all())


def test_duplicates_merge_without_loss(sleepy: Store) -> None:
    for a, b, _ in DUPLICATES:
        sleepy.write(a, author="agent")
        sleepy.write(b, author="agent", force=True)
    sleepy.write("Unrelated: the office wifi is called Orbit.", author="agent")
    report = Cycle(sleepy).run()
    merges = [a for a in report.applied if a["kind"] == "merge"]
    assert len(merges) == len(DUPLICATES), report.markdown()
    active = [r for r in sleepy.index.all_rows("memory") if r.status == "active"]
    assert len(active) == len(DUPLICATES) + 1
    for a, _, detail in DUPLICATES:
        hits = sleepy.search(a)["hits"]
        assert detail in sleepy.read(hits[0]["id"])["content"], (detail, hits[0])
    log = git(sleepy.root, "log", "--format=%an|%s")
    assert "somna-sleep|sleep cycle" in log
    archived = [r for r in sleepy.index.all_rows("memory") if r.status == "archived"]
    assert len(archived) == 2 * len(DUPLICATES)
    for row in archived:  # originals are kept, readable, and point at their merge
        assert sleepy.read(row.id)["meta"]["superseded_by"]


def test_contradiction_supersedes_the_older(sleepy: Store) -> None:
    old = sleepy.write("The cache TTL for the catalog service is 300 seconds.", author="agent")
    time.sleep(1.1)
    new = sleepy.write("The cache TTL for the catalog service is 900 seconds.", author="agent", force=True)
    report = Cycle(sleepy).run()
    assert [a["kind"] for a in report.applied] == ["supersede"], report.markdown()
    hits = sleepy.search("catalog cache TTL")["hits"]
    assert hits[0]["id"] == new["id"] and old["id"] not in [h["id"] for h in hits]
    both = sleepy.search("catalog cache TTL", include_archived=True)["hits"]
    assert [h["id"] for h in both[:2]] == [new["id"], old["id"]]
    assert sleepy.read(old["id"])["meta"]["superseded_by"] == new["id"]
    assert "300 seconds" in sleepy.read(old["id"])["content"]  # superseded, never deleted
    sleepy.revert(old["id"], author="human")
    assert sleepy.read(old["id"])["meta"].get("status") is None


def test_ten_cycles_lose_nothing_and_stop_rewriting(sleepy: Store) -> None:
    for a, b, _ in DUPLICATES:
        sleepy.write(a, author="agent")
        sleepy.write(b, author="agent", force=True)
    heads = []
    for _ in range(10):
        Cycle(sleepy).run()
        heads.append(git(sleepy.root, "rev-parse", "HEAD"))
    assert len(set(heads[1:])) == 1, "cycles after the first changed something again"
    for _, b, detail in DUPLICATES:
        hits = sleepy.search(b)["hits"]
        assert detail in sleepy.read(hits[0]["id"])["content"]


def test_dry_run_changes_nothing(sleepy: Store) -> None:
    for a, b, _ in DUPLICATES:
        sleepy.write(a, author="agent")
        sleepy.write(b, author="agent", force=True)
    head = git(sleepy.root, "rev-parse", "HEAD")
    report = Cycle(sleepy, dry_run=True).run()
    assert report.applied and git(sleepy.root, "rev-parse", "HEAD") == head


def test_queued_action_is_reviewed_then_applied(sleepy: Store) -> None:
    mem = sleepy.write("Use the legacy deploy script deploy_v1.sh for hotfixes.", author="agent")
    sleepy.feedback([mem["id"]] * 3, "harmful", author="agent")
    report = Cycle(sleepy).run()
    assert [q["kind"] for q in report.queued] == ["archive"]
    assert sleepy.read(mem["id"])["meta"].get("status") is None
    (item,) = pending(sleepy)
    decide(sleepy, item["id"], accept=True)
    assert sleepy.read(mem["id"])["meta"]["status"] == "archived"
    assert pending(sleepy) == []


def test_a_change_after_the_snapshot_is_never_overwritten(sleepy: Store) -> None:
    old = sleepy.write("The cache TTL for the search service is 300 seconds.", author="agent")
    time.sleep(1.1)
    sleepy.write("The cache TTL for the search service is 900 seconds.", author="agent", force=True)
    cycle = Cycle(sleepy)
    snap = cycle.snapshot()
    current = sleepy.read(old["id"])
    sleepy.edit(old["id"], "append", current["version"], text="Agreed with the SRE team.", author="agent")
    original = cycle.snapshot
    cycle.snapshot = lambda: snap  # type: ignore[method-assign]
    try:
        report = cycle.run()
    finally:
        cycle.snapshot = original  # type: ignore[method-assign]
    assert report.dropped and not report.applied
    assert "Agreed with the SRE team." in sleepy.read(old["id"])["content"]
    assert sleepy.read(old["id"])["meta"].get("status") is None
