"""`somna daemon`: watch a store, keep the index in step with hand edits, and sleep on new experience.

- A file under memory/, blocks/, skills/ or proposals/ changed by hand is indexed and committed as
  `human` (debounced, so a burst of events costs one pass).
- New experience in inbox/ starts a consolidation cycle a few seconds later; a store that has changed
  and then stayed idle for `idle` seconds gets one too.
- Folders of harness transcripts named in somna.toml (`[daemon] watch = ["~/.claude/projects"]`) or with
  `--watch`: a `*.jsonl` transcript that changes while the daemon runs is captured into inbox/ (secrets
  redacted, only the lines added since its last capture) once it has been quiet for a while, since a
  harness appends to it turn by turn. Transcripts that do not change are left alone: `somna capture
  --transcript PATH` takes an older one by hand.
- One daemon per store (a lock file); SIGTERM / SIGINT stop it cleanly; logs go to
  .somna/logs/daemon.log (rotated) and, unless it runs in the background, stderr.
- Started by `somna serve` (`--background`, background.py), it leaves once no server has held a lease
  on the store for `linger` seconds and nothing waits, after a last cycle if the store changed since
  the one before. Any daemon leaves when its store is deleted or moved.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from somna import background, sync
from somna.capture import capture
from somna.errors import SomnaError, StoreBusy
from somna.layout import TRACKED
from somna.locks import try_lock
from somna.sleep.cycle import Cycle, ExtraPass
from somna.sleep.transcripts import inbox_files
from somna.store import Store

log = logging.getLogger("somna.daemon")
CONTENT = tuple(f"{p}/" if "." not in p else p for p in TRACKED)  # a changed path under these is content
TRANSCRIPT_QUIET = 30.0  # seconds without a write before a watched transcript is captured
HEALTH_EVERY = 2.0  # seconds between checks that the file watcher still runs
HARNESS_MARKERS = (
    (".claude", "claude-code"),
    (".codex", "codex"),
    (".cursor", "cursor"),
    (".vscode", "vscode"),
)


def harness_of(path: Path) -> str:
    """The harness a transcript belongs to, guessed from the folder it lives in."""
    parts = {p.lower() for p in path.parts}
    return next((name for marker, name in HARNESS_MARKERS if marker in parts), "transcript")


def watch_folders(store: Store, extra: list[str] | None = None) -> list[Path]:
    """somna.toml's [daemon] watch (relative to the store) and `--watch` folders (relative to here)."""
    folders = [store.root / Path(w).expanduser() for w in store.config.watch]
    folders += [Path(w).expanduser().absolute() for w in extra or []]
    return list(dict.fromkeys(f.resolve() for f in folders))


class _Events(FileSystemEventHandler):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "") or ""):
            if raw:
                self.daemon.note(os.fsdecode(raw))


class Daemon:
    def __init__(
        self,
        store: Store,
        *,
        idle: float = 600.0,
        debounce: float = 0.25,
        inbox_delay: float = 3.0,
        extra_passes: list[ExtraPass] | None = None,
        watch: list[Path] | None = None,
        transcript_quiet: float = TRANSCRIPT_QUIET,
        lock_fd: int | None = None,
        linger: float | None = None,
    ) -> None:
        self.store = store
        self.given_fd = lock_fd  # the daemon's lock, taken by the server that started this daemon
        self.linger = linger  # None: run until stopped (a daemon started by hand)
        self.why_stopped = "stopped"
        self._last_server = time.monotonic()
        self._had_server = False
        self._identity: tuple[int, int] | None = None
        self._state_dir: int | None = None
        self.state: dict[str, Any] = {}
        self.watch = [Path(w).resolve() for w in watch or []]
        self.transcript_quiet = transcript_quiet
        self._transcripts: dict[Path, float] = {}  # changed transcript -> when it last changed
        self.captures = 0
        self.idle = idle
        self.debounce = debounce
        self.inbox_delay = inbox_delay
        self.extra_passes = extra_passes or []
        self.stop_event = threading.Event()
        self.watching = threading.Event()  # set once the file watcher runs
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._last_event = 0.0
        self._changed_since_cycle = False
        self._cycle_due: float | None = None
        self._lock_fd: int | None = None
        self.cycles = 0
        self.syncs = 0
        self._resync = False  # the last sync failed: try again at the next health check
        self.team = sync.Schedule(store)  # syncs with the store's remote: at start, often, at the end
        self.restarts = 0  # the file watcher, restarted after it died
        self.observer: Any = None

    # -- events -------------------------------------------------------------------------------
    def note(self, path: str) -> None:
        resolved = Path(path).resolve()
        try:
            rel = resolved.relative_to(self.store.root).as_posix()
        except ValueError:
            if resolved.suffix == ".jsonl" and any(resolved.is_relative_to(w) for w in self.watch):
                with self._lock:
                    self._transcripts[resolved] = time.monotonic()
            return
        if rel.startswith((".git/", ".somna/")) or rel in (".git", ".somna") or "/.tmp-" in f"/{rel}":
            return
        with self._lock:
            self._pending.add(rel)
            self._last_event = time.monotonic()

    def _take(self) -> set[str]:
        with self._lock:
            if not self._pending or time.monotonic() - self._last_event < self.debounce:
                return set()
            out, self._pending = self._pending, set()
            return out

    # -- lifecycle ----------------------------------------------------------------------------
    def acquire(self) -> None:
        path = self.store.layout.daemon_lock
        fd = self.given_fd if self.given_fd is not None else try_lock(path)
        if fd is None:
            try:
                other = path.read_text(encoding="ascii", errors="replace").strip()[:32] or "?"
            except OSError:
                other = "?"
            raise StoreBusy(f"a somna daemon (pid {other}) already watches {self.store.root}")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        st = self.store.root.stat()
        self._identity = (st.st_dev, st.st_ino)
        self._state_dir = os.open(
            background.folder(self.store.layout.daemon_dir), os.O_RDONLY | os.O_DIRECTORY
        )
        self.state = {
            "pid": os.getpid(),
            "since": background.now_iso(),
            "started": time.time(),
            "store": str(self.store.root),
        }
        self._save_state()

    def _save_state(self, **changes: Any) -> None:
        self.state.update(changes)
        if self._state_dir is not None:
            try:
                background.write_state(self.store.layout, self.state, dir_fd=self._state_dir)
            except OSError as exc:  # a store deleted, or a disk gone read-only: status says what it can
                log.warning("cannot write the daemon's state: %s", exc)

    def gone(self) -> bool:
        """Whether the store has been deleted or moved away from its path since the daemon began."""
        try:
            st = self.store.root.stat()
        except OSError:
            return True
        if (st.st_dev, st.st_ino) != self._identity:
            return True
        return not (self.store.root / ".git").exists() or not (self.store.root / "memory").is_dir()

    def release(self, failed: bool = False) -> None:
        if self._state_dir is not None:
            self._save_state(ended=background.now_iso(), why=self.why_stopped, ok=not failed)
            if failed:
                self._safe(lambda: background.note_crash(self.store.layout, os.getpid(), self.why_stopped))
            os.close(self._state_dir)
            self._state_dir = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _observe(self) -> Any:
        observer = Observer()
        observer.schedule(_Events(self), str(self.store.root), recursive=True)
        for folder in self.watch:
            if folder.is_dir():
                observer.schedule(_Events(self), str(folder), recursive=True)
                log.info("capturing transcripts from %s", folder)
            else:
                log.warning("not watching %s: no such folder", folder)
        observer.start()
        return observer

    def _blind(self, observer: Any) -> bool:
        """Whether the watcher has stopped seeing: its thread or one of its emitter threads has died."""
        return not observer.is_alive() or any(not e.is_alive() for e in list(observer.emitters))

    def run(self) -> None:
        self.acquire()
        failed = False
        try:
            self.observer = self._observe()
            self.watching.set()
            log.info("watching %s (idle cycle after %.0f s)", self.store.root, self.idle)
            self._safe(self.store.sync)
            self._safe(self._inbox_waiting)
            checked = time.monotonic()
            while not self.stop_event.wait(0.05):
                self._safe(self.tick)  # nothing a tick throws stops the watching
                if time.monotonic() - checked >= HEALTH_EVERY:
                    checked = time.monotonic()
                    if self.gone():
                        log.warning("the store %s is gone or has moved: stopping", self.store.root)
                        self.why_stopped = "the store is gone or has moved"
                        break
                    self._safe(self.team.tick)
                    if self.linger is not None:
                        self._safe(self._maybe_leave)
                    if self._resync:
                        log.info("syncing again after a failed sync")
                        self._resync = self._safe(self.store.sync) is None
                    if self._blind(self.observer):
                        # an emitter thread that died on an unexpected error would leave the daemon blind
                        log.warning("the file watcher stopped; starting it again and catching up")
                        self._safe(self._rewatch)  # if it fails, the next check tries again
        except BaseException as exc:  # SystemExit from a library too: no daemon ends without a word
            if not self.gone():  # a store moved away as the daemon began is no failure of the daemon
                failed = True
                self.why_stopped = f"failed: {type(exc).__name__}: {exc}"[:300]
                log.critical("the daemon stops: %s", self.why_stopped, exc_info=True)
                raise
            log.warning("the store %s is gone or has moved: stopping", self.store.root)
            self.why_stopped = "the store is gone or has moved"
        finally:
            try:
                if self.observer is not None:
                    self.observer.stop()
                    self.observer.join(timeout=5)
            finally:
                self.release(failed)  # its state says when and why it stopped, whatever happened above
                log.info("stopped")

    def _inbox_waiting(self) -> None:
        """A transcript that came into the inbox while no daemon ran gets its cycle too."""
        done = self.store.layout.sleep_dir / "state.json"
        last = done.stat().st_mtime if done.exists() else 0.0
        if any(p.stat().st_mtime > last for p in inbox_files(self.store.root)):
            self._cycle_due = time.monotonic() + self.inbox_delay

    def busy(self) -> bool:
        """Whether work waits: changes not yet taken in, a cycle due, a transcript not yet captured."""
        with self._lock:
            return bool(self._pending or self._transcripts) or self._cycle_due is not None

    def _maybe_leave(self) -> None:
        """Leave once no server has held a lease for `linger` seconds and nothing waits; a store that
        changed since its last cycle gets one first (it is idle now: nobody uses it)."""
        now = time.monotonic()  # a clock set forward or back does not count as time passing
        live = background.live_servers(self.store.layout)
        if live or self._had_server:  # the linger counts from the first check that found none
            self._had_server = bool(live)
            self._last_server = now
            return
        if self.linger is None or now - self._last_server < self.linger or self.busy():
            return
        if self._changed_since_cycle:
            self.cycle("no session uses the store any more")
            return
        log.info("no server for %.0f s and nothing waits: leaving", self.linger)
        self._safe(self.team.now)  # the last session ended: what was learned goes out
        self.why_stopped = f"no server for {self.linger:.0f} s and nothing waiting"
        self.stop_event.set()

    def _rewatch(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
        self.observer = self._observe()
        self.store.sync()  # what changed while nobody watched
        self.restarts += 1  # counted once caught up, so whoever waits on it sees the catch-up done

    def _quiet_transcripts(self, now: float) -> list[Path]:
        with self._lock:
            due = [p for p, t in self._transcripts.items() if now - t >= self.transcript_quiet]
            for p in due:
                del self._transcripts[p]
        return due

    def capture(self, transcript: Path) -> None:
        out = capture(
            self.store.root,
            transcript,
            harness=harness_of(transcript),
            session_id=transcript.stem,
            event="watch",
            final=False,
        )
        if out.path is not None:
            self.captures += 1
            log.info("captured %s: %s", transcript, out.summary())

    def tick(self) -> None:
        now = time.monotonic()
        for transcript in self._quiet_transcripts(now):
            self._safe(lambda t=transcript: self.capture(t))  # lands in inbox/: the store's watcher sees it
        changed = self._take()
        if changed:
            if any(p.startswith(CONTENT) for p in changed):
                # a sync that failed (someone's git held the index for seconds) is tried again at each check
                self._resync = self._safe(self.store.sync) is None
                self.syncs += 1
            if any(p.startswith("inbox/") and not p.startswith("inbox/processed") for p in changed):
                self._cycle_due = now + self.inbox_delay
            self._changed_since_cycle = True
        if self._cycle_due is not None and now >= self._cycle_due:
            self.cycle("new experience in the inbox")
        elif self._changed_since_cycle and now - self._last_event >= self.idle:
            self.cycle(f"idle for {self.idle:.0f} s")

    def cycle(self, why: str) -> dict[str, Any] | None:
        log.info("sleep cycle: %s", why)
        self._cycle_due = None
        report = self._safe(lambda: Cycle(self.store, extra_passes=self.extra_passes).run())
        self.cycles += 1
        self._save_state(cycles=self.cycles, last_cycle=background.now_iso(), last_cycle_why=why)
        time.sleep(self.debounce * 2)
        with self._lock:  # what the cycle itself wrote is not new experience
            self._pending = {
                p for p in self._pending if p.startswith("inbox/") and not p.startswith("inbox/processed")
            }
        self._changed_since_cycle = False
        if report is not None:
            log.info("cycle done: %s", report.counts() or "nothing to do")
            return report.__dict__
        return None

    def _safe(self, fn: Any) -> Any:
        """The daemon survives anything a pass or a broken file throws; it logs and carries on."""
        try:
            return fn()
        except SomnaError as exc:
            log.warning("%s", exc)
            self._failed(str(exc))
        except Exception as exc:
            log.exception("unexpected error (the daemon keeps running)")
            self._failed(f"{type(exc).__name__}: {exc}")
        return None

    def _failed(self, what: str) -> None:
        """The last failure, for `somna status`: written once per new failure, not at every tick."""
        if (self.state.get("last_failure") or {}).get("what") != what[:300]:
            self._save_state(last_failure={"at": background.now_iso(), "what": what[:300]})

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            self.stop_event.set()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, stop)
