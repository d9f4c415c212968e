"""The daemon captures harness transcripts from watched folders into the inbox, redacted, and sleeps on them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import somna

from somna.daemon import Daemon, harness_of, watch_folders
from somna.embeddings import HashEmbedder
from somna.errors import InvalidInput
from somna.store import Store

TOKEN = "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5"


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s")


def turn(role: str, text: str) -> str:
    return json.dumps({"type": role, "message": {"role": role, "content": text}}) + "\n"


def inbox_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "inbox").glob("*.jsonl"))


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    store = Store.init(tmp_path / "s", embedder=HashEmbedder())
    transcripts = tmp_path / "home" / ".claude" / "projects" / "my-app"
    transcripts.mkdir(parents=True)
    daemon = Daemon(store, idle=3600, inbox_delay=0.2, watch=[transcripts.parent], transcript_quiet=0.3)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    assert daemon.watching.wait(30)
    yield daemon, transcripts
    daemon.stop_event.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    store.close()


def test_a_changed_transcript_is_captured_redacted_and_slept_on(running: tuple[Daemon, Path]) -> None:
    daemon, folder = running
    root = daemon.store.root
    session = folder / "5f1c-session.jsonl"
    session.write_text(
        turn("user", "deploy with the token " + TOKEN) + turn("assistant", "Done: ran make deploy."),
        encoding="utf-8",
    )
    wait_for(lambda: len(inbox_files(root)) == 1)
    first = inbox_files(root)[0].read_text(encoding="utf-8")
    header = json.loads(first.splitlines()[0])["somna_capture"]
    assert header["harness"] == "claude-code" and header["session_id"] == "5f1c-session"
    assert header["lines"] == [1, 2] and header["redacted"] == {"github_token": 1}
    assert TOKEN not in first and "make deploy" in first
    wait_for(lambda: daemon.cycles >= 1)  # new experience in the inbox starts a cycle

    with session.open("a", encoding="utf-8") as f:  # the harness appends the next turn
        f.write(turn("user", "and now the docs"))
    wait_for(lambda: len(inbox_files(root)) == 2)
    second = inbox_files(root)[1].read_text(encoding="utf-8")
    assert json.loads(second.splitlines()[0])["somna_capture"]["lines"] == [3, 3]
    assert "make deploy" not in second and "the docs" in second
    assert daemon.captures == 2


def test_files_that_are_not_transcripts_and_unchanged_ones_are_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "transcripts"
    folder.mkdir()
    (folder / "old.jsonl").write_text(turn("user", "from before the daemon started"), encoding="utf-8")
    store = Store.init(tmp_path / "s", embedder=HashEmbedder())
    daemon = Daemon(store, idle=3600, watch=[folder], transcript_quiet=0.2)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        assert daemon.watching.wait(30)
        (folder / "notes.txt").write_text("not a transcript\n", encoding="utf-8")
        (folder / "broken.jsonl").write_bytes(b"\xff\xfe not json \x00\n")
        wait_for(lambda: len(inbox_files(store.root)) == 1)
        time.sleep(0.6)
        (captured,) = inbox_files(store.root)
        assert "broken" in captured.name and "from before" not in captured.read_text(encoding="utf-8")
        assert thread.is_alive()
    finally:
        daemon.stop_event.set()
        thread.join(timeout=10)
        store.close()


def test_watch_folders_come_from_somna_toml_and_the_command_line(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "s", embedder=HashEmbedder())
    store.close()
    (tmp_path / "s" / "somna.toml").write_text(
        '[daemon]\nwatch = ["~/.claude/projects", "local"]\n', encoding="utf-8"
    )
    store = Store(tmp_path / "s", embedder=HashEmbedder())
    try:
        folders = watch_folders(store, ["elsewhere"])
        assert folders == [
            Path("~/.claude/projects").expanduser().resolve(),
            (tmp_path / "s" / "local").resolve(),
            (tmp_path / "elsewhere").resolve(),
        ]
    finally:
        store.close()
    (tmp_path / "s" / "somna.toml").write_text("[daemon]\nwatch = 3\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="daemon.watch must be a list of folders"):
        Store(tmp_path / "s", embedder=HashEmbedder())
    assert harness_of(Path("/h/.codex/sessions/x.jsonl")) == "codex"
    assert harness_of(Path("/h/logs/x.jsonl")) == "transcript"


def test_somna_daemon_watch_starts_and_stops_cleanly(tmp_path: Path) -> None:
    store = tmp_path / "s"
    somna("init", str(store))
    folder = tmp_path / "t"
    folder.mkdir()
    command = [
        sys.executable,
        "-m",
        "somna",
        "--store",
        str(store),
        "daemon",
        "--watch",
        str(folder),
        "--watch",
        str(tmp_path / "missing"),
    ]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL, env={**os.environ, "SOMNA_EMBEDDER": "hash"})
    try:
        log = store / ".somna" / "logs" / "daemon.log"
        wait_for(lambda: log.exists() and "watching" in log.read_text(encoding="utf-8"), timeout=60)
        text = log.read_text(encoding="utf-8")
        assert f"capturing transcripts from {folder}" in text and "no such folder" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_watcher_thread_that_dies_is_started_again_and_misses_nothing(running: tuple[Daemon, Path]) -> None:
    daemon, _ = running
    store = daemon.store
    for emitter in list(daemon.observer.emitters):
        emitter.stop()  # as an unexpected error in watchdog's inotify thread would end it
    meanwhile = store.root / "memory" / "written-while-blind.md"
    meanwhile.write_text(
        "Written while the watcher was down: the queue drains at 500 msgs/s.\n", encoding="utf-8"
    )
    deadline = time.monotonic() + 10
    while daemon.restarts == 0:
        assert time.monotonic() < deadline, "the watcher was not started again"
        time.sleep(0.05)
    assert store.search("queue drains msgs")["hits"][0]["id"] == "written-while-blind"  # caught up
    later = store.root / "memory" / "written-after.md"
    later.write_text("Written after the restart: the cache TTL is 90 s.\n", encoding="utf-8")
    deadline = time.monotonic() + 5
    while not [h for h in store.search("cache TTL 90")["hits"] if h["id"] == "written-after"]:
        assert time.monotonic() < deadline, "a hand edit after the restart was not seen"
        time.sleep(0.05)
