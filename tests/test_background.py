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
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        pid, stat, args = (line.strip().split(None, 2) + ["", ""])[:3]
        rows.append((int(pid), stat, args))
    return rows


def daemons(store: Path) -> list[int]:
    """The background daemons of a store (zombies included: one would be a leak too)."""
    return [pid for pid, _, args in ps() if "daemon --background" in args and f"--store {store} " in args]


def watching(store: Path) -> bool:
    """Whether a daemon watches the store: its log says so."""
    log = store / ".somna" / "logs" / "daemon.log"
    try:
        return daemons(store) != [] and "INFO watching" in log.read_text(encoding="utf-8")
    except OSError:
        return False


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
            "SOMNA_LOG_LEVEL": "INFO",
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cwd: Path, **env: str) -> subprocess.Popen[bytes]:
        with (self.home / f"serve-{len(self.procs)}.log").open("wb") as log:  # for a failure's post-mortem
            proc = subprocess.Popen(
                self.command,
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
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
    left = somna_processes(tmp_path)
    for line in left:
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:  # a daemon log that ends without "stopped" is this kill, not a silent death: say so
        (tmp_path / "killed-at-the-end.txt").write_text("\n".join(left) + "\n", encoding="utf-8")


@pytest.fixture
def sessions(home: Path) -> Iterator[Sessions]:
    s = Sessions(home)
    try:
        yield s
    finally:
        s.end_all()


def status(sessions: Sessions, cwd: Path, store: Path | None = None) -> tuple[int, dict]:
    where = ["--store", str(store)] if store else []
    out = subprocess.run(
        [sessions.command[0], *where, "status", "--json"],
        cwd=cwd,
        env=sessions.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode, json.loads(out.stdout)


@pytest.mark.slow  # some 15 s on a quiet machine, 40 s on a loaded one
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
    for _ in range(10):  # a while of `ps`: never two daemons for a store
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
        lambda: (
            "human|human edit picked up by somna: memory/by-hand.md"
            in git(project_store, "log", "--format=%an|%s")
        ),
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
    gone = wait_for(lambda: not somna_processes(tmp_path), LINGER + 20, "no somna process left")
    print(f"daemons up {took:.1f} s after the handshakes; none left {gone:.1f} s after the last session")
    assert not [p for p in ps() if p[1].startswith("Z") and "somna" in p[2]]
    assert gone >= LINGER  # they lingered, as they should, before going
    code, state = status(sessions, project)
    assert code == 0, state
    for s in state["stores"]:
        assert not s["daemon"]["running"] and s["daemon"]["ok"] and "no server" in s["daemon"]["why"], s


def store_with_duplicates(root: Path, pairs: int) -> str:
    """A store with `pairs` pairs of identical notes (a cycle merges each pair); its HEAD."""
    store = open_store(root, embedder=HashEmbedder(), create=True)
    rng = random.Random(7)
    words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega rho".split()
    for i in range(pairs):
        body = f"Build step {i}: " + " ".join(rng.choice(words) for _ in range(12)) + f" marker{i}q{i * 7}."
        for k in range(2):
            text = notes.serialize(notes.Note({"title": f"Build step {i}"}, body))
            (root / "memory" / f"n{i}-{k}.md").write_text(text, encoding="utf-8")
    store.sync()
    store.close()
    return git(root, "rev-parse", "HEAD").strip()


def one_session(sessions: Sessions, store: Path, **env: str) -> subprocess.Popen[bytes]:
    proc = sessions.start(store.parent, SOMNA_STORE=str(store), **env)
    sessions.handshake(proc)
    return proc


def test_one_session_starts_one_daemon_that_leaves_after_the_linger(
    tmp_path: Path, home: Path, sessions: Sessions
) -> None:
    """The light form of points 1 and 2 for the default suite: two sessions, one naming the store through
    a symlink, start one daemon; status says it runs (exit 0); a hand edit is committed as `human` by it;
    it is gone after the linger."""
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    (tmp_path / "link").symlink_to(store)
    procs = [one_session(sessions, store), one_session(sessions, tmp_path / "link")]
    wait_for(lambda: watching(store), 30, "the daemon")
    code, state = status(sessions, tmp_path, store)
    assert code == 0 and state["stores"][0]["daemon"]["pid"] == daemons(store)[0], state
    (store / "memory" / "by-hand.md").write_text("Deploys freeze on Fridays after 15:00.\n", encoding="utf-8")
    wait_for(
        lambda: (
            "human|human edit picked up by somna: memory/by-hand.md" in git(store, "log", "--format=%an|%s")
        ),
        20,
        "the hand edit committed as human",
    )
    assert len(daemons(store)) == 1 and not daemons(tmp_path / "link")
    for proc in procs:
        sessions.stop(proc)
    gone = wait_for(lambda: not somna_processes(tmp_path), LINGER + 20, "no somna process left")
    assert gone >= LINGER
    code, state = status(sessions, tmp_path, store)
    assert code == 0 and not state["stores"][0]["daemon"]["running"], state


def test_a_cycle_killed_half_way_is_undone_before_anything_is_committed_as_human(tmp_path: Path) -> None:
    """All or nothing, in a process killed with -9 after one part of its changes was committed and while
    the next was written: the next sync puts the store back where the cycle began, keeps what it set
    aside, and commits nothing of it as a hand edit."""
    root = tmp_path / "s"
    base = store_with_duplicates(root, 3)
    pid = os.fork()
    if pid == 0:  # the cycle's process
        try:
            store = open_store(root, embedder=HashEmbedder())
            with store.all_or_nothing("sleep cycle", "somna-sleep"):
                with store.batch("sleep cycle: part 1", "somna-sleep"):
                    store.write(
                        "A merged note of the first part.", title="Part one", author="somna-sleep", force=True
                    )
                with store.batch("sleep cycle: part 2", "somna-sleep"):
                    store.write(
                        "A note of the second part.", title="Part two", author="somna-sleep", force=True
                    )
                    (root / "memory" / "n0-0.md").write_text("half written\n", encoding="utf-8")
                    (root / "memory" / ".tmp-abc123.md").write_text(
                        "an atomic write cut short", encoding="utf-8"
                    )
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(3)
    _, code = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(code) and os.WTERMSIG(code) == signal.SIGKILL
    assert (root / ".somna" / "intent.json").exists()
    assert "somna-sleep" in git(root, "log", "-1", "--format=%an")  # part 1 was in
    store = open_store(root, embedder=HashEmbedder())
    try:
        store.sync()
    finally:
        store.close()
    assert not (root / ".somna" / "intent.json").exists()
    assert git(root, "diff", base, "HEAD", "--", "memory", "proposals") == ""  # all out
    assert git(root, "status", "--porcelain", "--", "memory") == ""
    authors = git(root, "log", f"{base}..HEAD", "--format=%an|%s").splitlines()
    assert not [a for a in authors if a.startswith("human")], authors
    assert authors[0].startswith("somna|undo the interrupted sleep cycle"), authors
    assert not list((root / "memory").glob(".tmp-*"))  # the cut-short write is set aside too
    assert list((root / ".somna" / "recovered").rglob(".tmp-abc123.md"))
    kept = list((root / ".somna" / "recovered").rglob("n0-0.md"))
    assert kept and kept[0].read_text(encoding="utf-8") == "half written\n"  # set aside, not lost
    out = somna("--store", str(root), "status")  # said where a person looks, not only in a server's log
    assert "last interrupted sleep cycle: undone at" in out.stdout and "1 commit(s) reverted" in out.stdout, (
        out.stdout
    )
    undo = json.loads(somna("--store", str(root), "status", "--json").stdout)["stores"][0]["last_undo"]
    assert undo["name"] == "sleep cycle" and undo["reverted"] == 1 and undo["restored"] >= 2, undo


@pytest.mark.slow  # two cycles over 100 pairs: some 40 s
def test_kill_9_of_the_daemon_while_it_applies_a_cycle(
    tmp_path: Path, home: Path, sessions: Sessions
) -> None:
    """Point 3: the daemon is killed with -9 while it applies a cycle, one part committed and the next one
    begun (the cycle waits there, through SOMNA_TEST_CYCLE_PAUSE, so the kill lands there every time); the
    next server starts one daemon, which undoes the cycle (all out: memory/ and proposals/ exactly as
    before it), then sleeps again (all in: every pair merged); `somna doctor` finds the store sound."""
    store = tmp_path / "s"
    base = store_with_duplicates(store, 100)
    paused = tmp_path / "paused"
    first = one_session(sessions, store, SOMNA_DAEMON_LINGER="120", SOMNA_TEST_CYCLE_PAUSE=str(paused))
    wait_for(lambda: watching(store), 30, "the daemon")
    (store / "inbox" / "session.md").write_text("user: the build broke again\n", encoding="utf-8")
    wait_for(paused.exists, 180, "the cycle half-way through applying")
    (victim,) = daemons(store)
    assert paused.read_text(encoding="utf-8") == str(victim)
    intent = store / ".somna" / "intent.json"
    assert intent.exists()
    parts = git(store, "log", f"{base}..HEAD", "--format=%H|%an|%s").splitlines()
    dirty = git(store, "status", "--porcelain", "--", "memory").splitlines()
    assert len(parts) == 1 and "|somna-sleep|sleep cycle: 1 merge (part 1)" in parts[0], parts
    assert dirty, "the next part has written nothing yet"
    sessions.stop(first)  # first: its server would start a daemon again, one that pauses too
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not daemons(store), 10, "the daemon gone")
    print(f"killed with {len(parts)} part committed and {len(dirty)} file(s) written of the next")
    code, state = status(sessions, tmp_path, store)  # no server has noticed yet: status has
    d = state["stores"][0]["daemon"]
    assert code == 0 and not d["running"] and "ended without a word" in d["why"], state

    second = one_session(sessions, store, SOMNA_DAEMON_LINGER="120")
    wait_for(lambda: not intent.exists(), 60, "the interrupted cycle undone")
    reports = store / ".somna" / "sleep" / "reports"
    took = wait_for(lambda: list(reports.glob("*.json")), 180, "the next cycle")
    assert len(daemons(store)) == 1
    log = git(store, "log", "--reverse", f"{base}..HEAD", "--format=%H|%an|%s").splitlines()
    assert log[0] == parts[0], log  # nothing came between the part and its undo
    sha, author, subject = log[1].split("|", 2)
    assert author == "somna" and subject.startswith("undo the interrupted sleep cycle"), log
    assert git(store, "diff", base, sha, "--", "memory", "proposals") == ""  # all out
    after = [line.split("|", 2)[1:] for line in log[2:]]  # the next cycle: one commit, or one per part
    assert after and all(a == "somna-sleep" and s.startswith("sleep cycle: ") for a, s in after), log
    assert git(store, "status", "--porcelain", "--", "memory", "proposals") == ""
    merged = [p for p in (store / "memory").glob("n*-[01].md") if "superseded_by:" in p.read_text("utf-8")]
    assert len(merged) == 200, len(merged)  # all in: both notes of every pair
    kept = list((store / ".somna" / "recovered").rglob("*.md"))
    assert kept, "the half-written part is set aside, not lost"
    doctor = somna("--store", str(store), "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    code, state = status(sessions, tmp_path, store)
    d = state["stores"][0]["daemon"]
    assert code == 0 and d["running"] and d["crashes_last_hour"] == 1, state
    sessions.stop(second)
    assert daemons(store) == [d["pid"]]  # the daemon of the next cycle is still there, lingering
    print(
        f"undone, and the next cycle done {took:.1f} s after the next session; {len(kept)} file(s) set aside"
    )


def test_a_daemon_that_keeps_crashing_is_not_started_again_and_status_says_so(
    tmp_path: Path, home: Path, sessions: Sessions
) -> None:
    """Point 5's failure state: the third crash within the hour (two earlier ones on record, then a
    crash of native code, whose trace faulthandler leaves in logs/daemon.stderr) and the server stops
    starting the daemon; `somna status` exits 1 and says why."""
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    crashes = store / ".somna" / "daemon" / "crashes"
    crashes.parent.mkdir(parents=True)
    now = time.time()
    crashes.write_text(f"{now - 600:.0f} 11 earlier\n{now - 300:.0f} 12 earlier\n", encoding="utf-8")
    one_session(sessions, store)
    wait_for(lambda: watching(store), 30, "the daemon")
    code, state = status(sessions, tmp_path, store)
    assert code == 0 and state["stores"][0]["daemon"]["crashes_last_hour"] == 2, state
    os.kill(daemons(store)[0], signal.SIGSEGV)  # as native code crashing would: not a silent end
    wait_for(lambda: status(sessions, tmp_path, store)[0] == 1, 30, "status saying the daemon is given up")
    stderr = (store / ".somna" / "logs" / "daemon.stderr").read_text(encoding="utf-8")
    assert "Fatal Python error: Segmentation fault" in stderr, stderr
    code, state = status(sessions, tmp_path, store)
    s = state["stores"][0]
    assert s["daemon"]["given_up"] and "crashed 3 times" in s["problems"][0], s
    for _ in range(6):  # the server checks every 5 s: it starts none
        assert not daemons(store)
        time.sleep(1)
    human = subprocess.run(
        [sessions.command[0], "--store", str(store), "status"],
        env=sessions.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert human.returncode == 1 and "not started again" in human.stdout, human.stdout


def test_a_daemon_leaves_when_its_store_is_moved_away(tmp_path: Path, home: Path, sessions: Sessions) -> None:
    """A store moved (or deleted) while its daemon runs: the daemon leaves within seconds, the server
    does not bring a ghost store back to life at the old path, and status says there is no store."""
    store = tmp_path / "s"
    assert somna("init", str(store)).returncode == 0
    one_session(sessions, store)
    wait_for(lambda: watching(store), 30, "the daemon")
    moved = tmp_path / "moved"
    os.rename(store, moved)
    wait_for(lambda: not daemons(store), 15, "the daemon gone")
    time.sleep(6)  # a server's check later: no daemon started for a ghost store at the old path
    assert not daemons(store) and not (store / ".somna" / "daemon").exists()
    state = json.loads((moved / ".somna" / "daemon" / "state.json").read_text(encoding="utf-8"))
    assert state["why"] == "the store is gone or has moved", state
    code, out = status(sessions, tmp_path, store)
    assert code == 1 and "no somna store" in out["stores"][0]["problems"][0], out


@pytest.mark.slow  # a minute, by its definition
def test_fifty_sessions_in_a_minute_never_two_daemons_and_none_at_the_end(
    tmp_path: Path, home: Path, sessions: Sessions
) -> None:
    """Point 4: 50 sessions start and stop at random over a minute, on a project store and the user
    store; `ps`, sampled all along, never shows two daemons for a store, and their logs show each one
    gone before the next began; after the linger, none, and `somna status` says all is well (exit 0)."""
    project = tmp_path / "project"
    project.mkdir()
    user_store, project_store = home / ".somna", project / ".somna-store"
    for path in (user_store, project_store):
        assert somna("init", str(path), env=sessions.env).returncode == 0
    rng = random.Random(16)
    # starts over 60 s, with a quiet spell in the middle long enough for the daemons to leave and come back
    starts = [rng.uniform(0, 25) for _ in range(25)] + [rng.uniform(45, 60) for _ in range(25)]
    most = {user_store: 0, project_store: 0}
    seen: dict[Path, set[int]] = {user_store: set(), project_store: set()}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for store in most:
                pids = daemons(store)
                most[store] = max(most[store], len(pids))
                seen[store].update(pids)
            time.sleep(0.1)

    unanswered: list[int] = []

    def session(seed: int) -> None:
        r = random.Random(seed)
        proc = sessions.start(project)
        try:
            if r.random() < 0.8:  # most do their handshake; some end before it, as sessions do
                try:
                    sessions.handshake(proc, timeout=120)
                except AssertionError:
                    unanswered.append(seed)  # a machine this loaded: the session ends all the same
            time.sleep(r.uniform(0.5, 6))
        finally:
            if r.random() < 0.2:
                proc.kill()  # a harness killed takes its server with it
                proc.wait()
            else:
                sessions.stop(proc)

    sampler = threading.Thread(target=sample)
    sampler.start()
    runners = []
    try:
        t0 = time.monotonic()
        for i, start in enumerate(sorted(starts)):
            time.sleep(max(0.0, start - (time.monotonic() - t0)))
            runners.append(threading.Thread(target=session, args=(i,)))
            runners[-1].start()
        for runner in runners:
            runner.join(timeout=300)
        took = time.monotonic() - t0
        gone = wait_for(lambda: not somna_processes(tmp_path), LINGER + 60, "no somna process left")
    finally:
        stop.set()
        sampler.join()
    print(
        f"50 sessions in {took:.0f} s; daemons seen {dict((k.name, len(v)) for k, v in seen.items())}; "
        f"most at once {dict((k.name, v) for k, v in most.items())}; none left {gone:.1f} s after the last; "
        f"{len(unanswered)} handshakes unanswered in 120 s"
    )
    assert all(v == 1 for v in most.values()), most
    assert all(len(v) >= 2 for v in seen.values()), seen  # they left in the quiet spell, and came back
    for store in most:  # between two samples too: each daemon stopped before the next one began watching
        logs = store / ".somna" / "logs"
        lines = (logs / "daemon.log").read_text(encoding="utf-8").splitlines()
        ends = [line.endswith(" INFO stopped") for line in lines if " INFO watching " in line or
                line.endswith(" INFO stopped")]  # fmt: skip
        life = ["stopped" if end else "watching" for end in ends]
        assert life == ["watching", "stopped"] * (len(life) // 2) and len(life) >= 4, life
        assert not (store / ".somna" / "daemon" / "crashes").exists()
        assert "Traceback" not in (logs / "daemon.stderr").read_text(encoding="utf-8")
    code, state = status(sessions, project)
    assert code == 0 and not any(s["daemon"]["running"] for s in state["stores"]), state
    assert all(s["daemon"]["ok"] and not s["daemon"]["crashes_last_hour"] for s in state["stores"]), state


def test_status_without_a_daemon_and_with_proposals_waiting(tmp_path: Path) -> None:
    """Point 5's quiet states: a store nobody serves is well (exit 0, no daemon, never slept); one whose
    review queue holds a proposal exits 3 and says so; status starts no daemon and needs no model."""
    root = tmp_path / "s"
    (tmp_path / "s").mkdir()
    store = open_store(root, embedder=HashEmbedder(), create=True)
    try:
        done = store.write("Releases are tagged vMAJOR.MINOR.PATCH.", title="Release tags", author="human")
        out = somna("--store", str(root), "status")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "daemon: not running" in out.stdout and "last sleep: never" in out.stdout, out.stdout
        (root / "somna.toml").write_text('[policy]\n"memory/**" = "propose"\n', encoding="utf-8")
        store.config = type(store.config).load(root)
        store.edit(
            done["id"], "append", done["version"], text="Pre-releases add -rc.N.", author="claude-code"
        )
    finally:
        store.close()
    out = somna("--store", str(root), "status", "--json")
    state = json.loads(out.stdout)
    assert out.returncode == 3 and state["stores"][0]["review"] == 1 and state["ok"], out.stdout
    (root / "inbox").mkdir(exist_ok=True)
    (root / "inbox" / "session.md").write_text("user: the build broke again\n", encoding="utf-8")
    out = somna("--store", str(root), "status")  # why a transcript waits: no model to read it
    assert "inbox: 1 transcript(s) waiting (read only with a model: no [llm] in somna.toml)" in out.stdout, (
        out.stdout
    )
    assert not daemons(root)
