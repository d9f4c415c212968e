"""The daemon in the background, with real processes: `somna serve` started as Claude Code starts it (from
the configuration `somna install claude-code` wrote into a throwaway HOME), the daemons it starts, `ps`.

Every process a test starts is ended when it ends, pass or fail: the servers it spawned, and any daemon
whose command line names the test's folder (daemons live in sessions of their own, not as children).
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from somna import notes
from somna.app import open_store
from somna.embeddings import HashEmbedder
from tests.conftest import git, somna

LINGER = 3.0


def wait_for(check: Callable[[], object], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


def ps() -> list[tuple[int, str, str]]:
    """(pid, state, command line) of every process, from `ps`."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        pid, stat, args = (line.strip().split(None, 2) + ["", ""])[:3]
        rows.append((int(pid), stat, args))
    return rows


def daemons(store: Path) -> list[int]:
    """The background daemons of a store (zombies included: one would be a leak too)."""
    return [pid for pid, _, args in ps() if "daemon --background" in args and f"--store {store} " in args]


def somna_processes(marker: Path) -> list[str]:
    """Every somna process that belongs to this test: its command line or its environment names `marker`."""
    found = []
    for pid, stat, args in ps():
        if "somna" not in args or pid == os.getpid():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            env = b""
        if str(marker) in args or str(marker).encode() in env:
            found.append(f"{pid} {stat} {args}")
    return found


class Sessions:
    """`somna serve` processes as a harness runs them: stdin and stdout pipes, an MCP handshake."""

    def __init__(self, home: Path) -> None:
        self.home = home
        config = json.loads((home / ".claude.json").read_text(encoding="utf-8"))["mcpServers"]["somna"]
        self.command = [config["command"], *config["args"]]
        self.env = {
            **os.environ,
            "HOME": str(home),
            "SOMNA_HOME": str(home / ".somna"),
            "SOMNA_DAEMON": "on",
            "SOMNA_DAEMON_LINGER": str(LINGER),
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cwd: Path, **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            self.command,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**self.env, **env},
        )
        self.procs.append(proc)
        return proc

    def handshake(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "claude-code", "version": "test"},
            },
        }
        proc.stdin.write((json.dumps(init) + "\n").encode())
        proc.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout), "no answer to initialize"
        answer = json.loads(proc.stdout.readline())
        assert answer["id"] == 1 and "result" in answer, answer
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        proc.stdin.write((json.dumps(note) + "\n").encode())
        proc.stdin.flush()

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """As a harness ends a session: it closes the server's stdin."""
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def end_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A throwaway HOME with somna installed into Claude Code's configuration; and at the end, every somna
    process of the test ended (the test itself asserts there were none left where that is its point)."""
    home = tmp_path / "home"
    home.mkdir()
    done = somna("install", "claude-code", env={"HOME": str(home), "SOMNA_HOME": str(home / ".somna")})
    assert done.returncode == 0, done.stderr
    yield home
    for line in somna_processes(tmp_path):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def sessions(home: Path) -> Iterator[Sessions]:
    s = Sessions(home)
    try:
        yield s
    finally:
        s.end_all()


def status(sessions: Sessions, cwd: Path, *extra: str) -> tuple[int, dict]:
    out = subprocess.run(
        [sessions.command[0], "status", "--json", *extra],
        cwd=cwd,
        env=sessions.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, json.loads(out.stdout)


def test_installed_five_sessions_at_once_one_daemon_each_store_then_none(
    tmp_path: Path, home: Path, sessions: Sessions
) -> None:
    """Points 1, 2 (and 5's running and stopped states): after `somna install claude-code` and nothing
    else, five sessions at once on a project store and the user store start one daemon per store; a hand
    edit is committed as `human`, a transcript in the inbox gets a cycle and its report; once the sessions
    end and the linger passes, no somna process is left, and `somna status` says so with exit code 0."""
    project = tmp_path / "project"
    project.mkdir()
    user_store, project_store = home / ".somna", project / ".somna-store"
    for path in (user_store, project_store):
        assert somna("init", str(path), env=sessions.env).returncode == 0
    procs = [sessions.start(project) for _ in range(5)]  # all at once
    for proc in procs:
        sessions.handshake(proc)
    took = wait_for(lambda: daemons(user_store) and daemons(project_store), 60, "a daemon for each store")
    seen = {user_store: set(), project_store: set()}
    most = 0
    for _ in range(40):  # two seconds of `ps`: never two daemons for a store
        for store in seen:
            pids = daemons(store)
            most = max(most, len(pids))
            seen[store].update(pids)
        time.sleep(0.05)
    assert most == 1 and all(len(p) == 1 for p in seen.values()), seen

    note = project_store / "memory" / "by-hand.md"
    note.write_text("The staging database is rebuilt every Sunday at 02:00 UTC.\n", encoding="utf-8")
    transcript = project_store / "inbox" / "session-1.jsonl"
    transcript.write_text(
        json.dumps({"type": "user", "message": {"role": "user", "content": "Why does the build fail?"}})
        + "\n",
        encoding="utf-8",
    )
    wait_for(
        lambda: "human|human edit picked up by somna: memory/by-hand.md"
        in git(project_store, "log", "--format=%an|%s"),
        20,
        "the hand edit committed as human",
    )
    reports = project_store / ".somna" / "sleep" / "reports"
    wait_for(lambda: list(reports.glob("*.json")), 30, "a cycle's report")
    code, state = status(sessions, project)
    by_store = {Path(s["store"]): s for s in state["stores"]}
    assert code == 0, state
    for store in (user_store, project_store):
        d = by_store[store.resolve()]["daemon"]
        assert d["running"] and d["pid"] == daemons(store)[0], d
    assert by_store[project_store.resolve()]["last_sleep"]["started"]

    for proc in procs:
        sessions.stop(proc)
    t0 = time.monotonic()
    gone = wait_for(lambda: not somna_processes(tmp_path), LINGER + 20, "no somna process left")
    print(f"daemons up {took:.1f} s after the handshakes; none left {gone:.1f} s after the last session")
    assert not [p for p in ps() if p[1].startswith("Z") and "somna" in p[2]]
    assert gone >= LINGER  # they lingered, as they should, before going
    code, state = status(sessions, project)
    assert code == 0, state
    for s in state["stores"]:
        assert not s["daemon"]["running"] and s["daemon"]["ok"] and "no server" in s["daemon"]["why"], s
