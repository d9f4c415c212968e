"""The daemon in the background: `somna serve` makes sure one runs for each store it opens, and it goes
once the last server has gone and nothing waits. See docs/background.md.

The files, in a store's `.somna/`:

    daemon.lock              held by the one daemon of the store (flock: the kernel lets go when it dies)
    daemon/servers/<pid>-<r> a server's lease, flock-held for the server's life: a live server
    daemon/state.json        the daemon's: pid, since, and once it stops, when and why
    daemon/crashes           a line per crash noticed ("<unix time> <pid> <why>")
    logs/daemon.log          what the daemon does (rotated at 1 MB, 3 kept); logs/daemon.stderr what
                             Python printed before its logging began (emptied when it passes 1 MB)

A server takes the daemon's lock to start one, and hands the locked descriptor to the daemon it starts:
between "nobody holds it" and "the new daemon holds it" there is no moment when a second server could
start another. A daemon that ended without saying so (its state has no `ended`) crashed; after
CRASH_LIMIT crashes within CRASH_WINDOW, servers stop starting it and `somna status` says so.

Nothing here is heavy: the stdlib, the lock helper and the layout's paths; `somna serve` imports it.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import logging.handlers
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from somna.layout import Layout, is_store, private
from somna.locks import try_lock

log = logging.getLogger("somna.background")
CRASH_LIMIT = 3  # crashes within CRASH_WINDOW after which no server starts the daemon again
CRASH_WINDOW = 3600.0
CHECK_EVERY = 5.0  # seconds between a server's checks that its stores' daemons run
STDERR_CAP = 1_000_000
LOG_CAP = 1_000_000  # bytes of daemon.log before it is rotated; 3 old ones are kept


def folder(path: Path) -> Path:
    """A folder of .somna/, made if needed, the user's alone (0700) like the rest of .somna/."""
    path.mkdir(parents=True, exist_ok=True)
    private(path)
    return path


def now_iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


# -- the daemon's state --------------------------------------------------------------------------
def read_state(layout: Layout) -> dict[str, Any]:
    try:
        data = json.loads((layout.daemon_dir / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(layout: Layout, state: dict[str, Any], *, dir_fd: int | None = None) -> None:
    """Replace state.json at once. With `dir_fd` (the daemon's open handle on daemon/), it lands in the
    store even after the store has been moved."""
    data = json.dumps(state).encode()
    tmp = f".state-{os.getpid()}.tmp"
    if dir_fd is None:
        dir_fd = os.open(folder(layout.daemon_dir), os.O_RDONLY | os.O_DIRECTORY)
        own = True
    else:
        own = False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=dir_fd)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, "state.json", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        if own:
            os.close(dir_fd)


def note_crash(layout: Layout, pid: Any, why: str) -> None:
    with (folder(layout.daemon_dir) / "crashes").open("a", encoding="utf-8") as fh:
        fh.write(f"{int(time.time())} {pid} {why[:200]}\n")


def crashes(layout: Layout) -> list[tuple[float, str]]:
    """Every crash noticed: (when, the line's words)."""
    try:
        lines = (layout.daemon_dir / "crashes").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        when, _, rest = line.partition(" ")
        try:
            out.append((float(when), rest))
        except ValueError:
            continue
    return out


def recent_crashes(layout: Layout, now: float | None = None) -> list[tuple[float, str]]:
    """The crashes within the window. One more than a minute "in the future" (the clock was set back
    since) is not counted: a clock that jumps must not keep the daemon from ever starting again."""
    now = time.time() if now is None else now
    return [c for c in crashes(layout) if -60 <= now - c[0] < CRASH_WINDOW]


def given_up(layout: Layout) -> bool:
    return len(recent_crashes(layout)) >= CRASH_LIMIT


def running(layout: Layout) -> bool:
    """Whether a daemon holds the store's daemon lock now."""
    fd = try_lock(layout.daemon_lock)
    if fd is None:
        return True
    os.close(fd)
    return False


# -- servers' leases -----------------------------------------------------------------------------
class Lease:
    """A server's claim on a store: a file in daemon/servers/ that it holds locked while it lives."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.fd: int | None = None

    def take(self) -> None:
        servers = folder(self.layout.daemon_dir / "servers")
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        # locked under a hidden name first: a daemon never sees an unlocked lease and takes it for dead
        fd = try_lock(servers / f".{name}")
        if fd is None:
            return
        os.replace(servers / f".{name}", servers / name)
        self.fd = fd


def live_servers(layout: Layout) -> int:
    """How many servers hold a lease on the store; the leases of servers that died are removed."""
    try:
        names = [p for p in (layout.daemon_dir / "servers").iterdir() if not p.name.startswith(".")]
    except OSError:
        return 0
    live = 0
    for path in names:
        fd = try_lock(path)
        if fd is None:
            live += 1
            continue
        try:
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return live


# -- starting the daemon -------------------------------------------------------------------------
def ensure(layout: Layout) -> str:
    """Make sure the store's daemon runs: "running", "started <pid>" or why not."""
    if not is_store(layout.root):  # deleted or moved while this server ran: nothing to watch, nor to create
        return "the store is gone"
    try:
        fd = try_lock(layout.daemon_lock)
    except OSError as exc:  # a read-only disk
        return f"cannot take the daemon's lock: {exc.strerror}"
    if fd is None:
        return "running"
    try:
        state = read_state(layout)
        if state and not state.get("ended"):
            note_crash(layout, state.get("pid"), "ended without a word (killed, or crashed)")
            write_state(layout, state | {"ended": now_iso(), "why": "crashed", "ok": False})
        if given_up(layout):
            return f"not started: it crashed {CRASH_LIMIT} times within {CRASH_WINDOW / 60:.0f} minutes"
        proc = spawn(layout, fd)
        write_state(layout, {"pid": proc.pid, "since": now_iso(), "started": time.time(), "by": os.getpid()})
        return f"started {proc.pid}"
    finally:
        os.close(fd)  # the daemon keeps the lock through its own copy of the descriptor


def spawn(layout: Layout, lock_fd: int) -> subprocess.Popen[bytes]:
    """`somna daemon --background` for the store, in a session of its own, holding `lock_fd`."""
    err = folder(layout.daemon_log.parent) / "daemon.stderr"
    mode = "wb" if err.exists() and err.stat().st_size > STDERR_CAP else "ab"
    command = [sys.executable, "-m", "somna", "--store", str(layout.root), "daemon", "--background"]
    with err.open(mode) as out:
        proc = subprocess.Popen(
            [*command, "--lock-fd", str(lock_fd)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            cwd=layout.root,
            start_new_session=True,  # no terminal, no signals of the harness's process group
            pass_fds=(lock_fd,),
        )
    # reaped when it ends, so that no zombie waits for this server to end
    threading.Thread(target=proc.wait, name="somna-daemon-reaper", daemon=True).start()
    return proc


def keep(
    layouts: Iterable[Layout],
    *,
    after: threading.Event | None = None,
    every: float = CHECK_EVERY,
    wait: float = 30.0,
) -> threading.Thread:
    """A server's thread: a lease on each store at once; then, once `after` is set (the handshake is
    answered: a daemon starting up must not take the CPU from it) or `wait` seconds have passed, every
    `every` seconds a daemon for each store (started again after a crash, or after one that left just
    as this server came)."""
    layouts = list(layouts)

    def run() -> None:
        leases = []
        for layout in layouts:
            lease = Lease(layout)
            try:
                lease.take()
            except OSError as exc:
                log.warning("no lease on %s: %s", layout.root, exc)
            leases.append(lease)  # kept: the lease lasts while its descriptor is open
        if after is not None:
            after.wait(wait)
        said: dict[Path, str] = {}
        while True:
            for layout in layouts:
                try:
                    what = ensure(layout)
                except Exception as exc:  # the server goes on serving whatever happens here
                    what = f"failed: {exc}"
                if what != "running" and said.get(layout.root) != what:
                    log.info("daemon of %s: %s", layout.root, what)
                said[layout.root] = what
            time.sleep(every)

    thread = threading.Thread(target=run, name="somna-background", daemon=True)
    thread.start()
    return thread


# -- the daemon's log ----------------------------------------------------------------------------
def setup_logging(layout: Layout, level: int = logging.INFO, *, alone: bool = False) -> None:
    """The daemon's log file; `alone` (in the background): nothing to stderr, where nobody reads, except
    what cannot reach the log: a crash of native code (faulthandler's trace), in logs/daemon.stderr."""
    folder(layout.daemon_log.parent)
    handler = logging.handlers.RotatingFileHandler(
        layout.daemon_log, maxBytes=LOG_CAP, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("somna")
    root.addHandler(handler)
    root.setLevel(level)
    if alone:
        root.propagate = False
        faulthandler.enable()  # stderr is logs/daemon.stderr (spawn)
        threading.excepthook = _thread_died


def _thread_died(args: threading.ExceptHookArgs) -> None:
    """An exception that ends one of the daemon's threads goes to its log, not to a stderr nobody reads."""
    if args.exc_type is SystemExit:
        return
    exc = (args.exc_type, args.exc_value, args.exc_traceback)
    name = args.thread.name if args.thread is not None else "?"
    log.error("the thread %s ended on an error", name, exc_info=exc)  # type: ignore[arg-type]
