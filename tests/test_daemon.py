"""Acceptance 6 of sleep-time: the watcher reflects hand edits within 2 s, survives bursts, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import somna

from somna.index import Index


def wait_for(check: Callable[[], bool], timeout: float = 2.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"not reflected within {timeout} s")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    store = tmp_path / "s"
    somna("init", str(store))
    with (tmp_path / "daemon.stderr").open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "somna", "--store", str(store), "daemon", "--idle", "3600"],
            stderr=err,
            text=True,
            env={**os.environ, "SOMNA_EMBEDDER": "hash"},
        )
        log = store / ".somna" / "logs" / "daemon.log"
        wait_for(lambda: log.exists() and "watching" in log.read_text(encoding="utf-8"), timeout=20)
        yield store, proc
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def rows(store: Path, query: str) -> list[str]:
    index = Index(store / ".somna")
    try:
        found = [r for r, _, _ in index.search_words(query, 10)]
        rows = index.rows(found)  # a row the daemon re-indexed in between is simply not there yet
        return [rows[r].id for r in found if r in rows]
    finally:
        index.close()


def edited(store: Path) -> int:
    """How many burst notes the index holds in their edited form."""
    index = Index(store / ".somna")
    try:
        return sum(
            1 for r in index.all_rows("memory") if r.path.startswith("memory/burst/") and "edited" in r.body
        )
    finally:
        index.close()


def test_hand_edits_are_reflected_within_two_seconds(daemon: tuple[Path, subprocess.Popen[str]]) -> None:
    """Each hand edit shows in search within 2 s (the median of the four; any one within 5 s, so that one
    hiccup of a loaded CI machine is not mistaken for a daemon that does not watch)."""
    store, proc = daemon
    note = store / "memory" / "by-hand.md"
    took = []
    note.write_text("The VPN needs split tunnelling for the build farm.\n", encoding="utf-8")
    took.append(wait_for(lambda: rows(store, "tunnelling") == ["by-hand"], timeout=5))
    note.write_text("The VPN needs full tunnelling since the audit.\n", encoding="utf-8")
    took.append(wait_for(lambda: rows(store, "audit") == ["by-hand"], timeout=5))
    note.rename(store / "memory" / "vpn.md")
    took.append(wait_for(lambda: rows(store, "audit") == ["vpn"], timeout=5))
    (store / "memory" / "vpn.md").unlink()
    took.append(wait_for(lambda: rows(store, "audit") == [], timeout=5))
    assert sorted(took)[1] <= 2.0 and sorted(took)[2] <= 2.0, took  # the median of four
    wait_for(
        lambda: (
            not subprocess.run(
                ["git", "status", "--porcelain"], cwd=store, capture_output=True, text=True
            ).stdout
        ),
        timeout=5,
    )
    log = subprocess.run(["git", "log", "--format=%an"], cwd=store, capture_output=True, text=True).stdout
    assert "human" in log.splitlines()
    assert proc.poll() is None


def test_burst_of_a_thousand_events_then_clean_stop(daemon: tuple[Path, subprocess.Popen[str]]) -> None:
    store, proc = daemon
    burst = store / "memory" / "burst"
    burst.mkdir()
    for i in range(500):
        (burst / f"n{i}.md").write_text(f"Burst note number {i} about item{i}.\n", encoding="utf-8")
    for i in range(500):
        (burst / f"n{i}.md").write_text(f"Burst note number {i} about thing{i}, edited.\n", encoding="utf-8")
    wait_for(lambda: rows(store, "thing499") == ["n499"], timeout=30)
    wait_for(lambda: edited(store) == 500, timeout=30)  # every note of the burst, not just the last one
    assert proc.poll() is None
    (store / "memory" / "after.md").write_text("Still watching after the burst.\n", encoding="utf-8")
    # still watching: the 2 s of a hand edit is the test above's; here a loaded machine may take longer
    wait_for(lambda: rows(store, "burst") != [] and rows(store, "watching") == ["after"], timeout=5)
    second = somna("--store", str(store), "daemon")
    assert second.returncode == 1 and "already watches" in second.stderr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True
    ).stdout
    assert children.strip() == ""
    report = somna("--store", str(store), "doctor")
    assert report.returncode == 0, report.stdout
    tracked = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "HEAD", "memory/burst"],
        cwd=store,
        capture_output=True,
        text=True,
    ).stdout
    assert len(tracked.split()) == 500  # the burst was committed, not only indexed


def test_a_hand_edit_is_committed_once_a_long_foreign_git_lock_goes(
    daemon: tuple[Path, subprocess.Popen[str]],
) -> None:
    """A person's `git commit` holds git's index lock longer than somna waits (its editor is open): the
    daemon's commit of a hand edit fails then, and is made at a later check once the lock has gone."""
    from somna import history

    store, proc = daemon
    lock = store / ".git" / "index.lock"
    lock.write_bytes(b"")
    (store / "memory" / "held.md").write_text(
        "Written while a person's git commit was open.\n", encoding="utf-8"
    )
    wait_for(lambda: rows(store, "person's") == ["held"], timeout=5)  # indexed at once, committed later
    lock.touch()  # the person's git is still busy: a lock this fresh is not stale, however slow the machine
    time.sleep(history.LOCK_WAIT + 0.5)
    assert (
        "held.md"
        in subprocess.run(
            ["git", "status", "--porcelain", "-uall"], cwd=store, capture_output=True, text=True
        ).stdout
    )
    lock.unlink(missing_ok=True)  # the person's commit is done (or somna took the lock as stale, after 5 s)
    wait_for(
        lambda: (
            "held.md"
            in subprocess.run(
                ["git", "log", "-1", "--name-only", "--format="], cwd=store, capture_output=True, text=True
            ).stdout
        ),
        timeout=5,
    )
    assert proc.poll() is None
