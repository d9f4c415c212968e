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
  .somna/daemon.log and stderr.
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

from somna.capture import capture
from somna.errors import SomnaError, StoreBusy
from somna.layout import TRACKED
from somna.locks import try_lock
from somna.sleep.cycle import Cycle, ExtraPass
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
    ) -> None:
        self.store = store
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
        fd = try_lock(path)
        if fd is None:
            try:
                other = path.read_text(encoding="ascii", errors="replace").strip()[:32] or "?"
            except OSError:
                other = "?"
            raise StoreBusy(f"a somna daemon (pid {other}) already watches {self.store.root}")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def release(self) -> None:
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
        self.observer = self._observe()
        self.watching.set()
        log.info("watching %s (idle cycle after %.0f s)", self.store.root, self.idle)
        try:
            self._safe(self.store.sync)
            checked = time.monotonic()
            while not self.stop_event.wait(0.05):
                self._safe(self.tick)  # nothing a tick throws stops the watching
                if time.monotonic() - checked >= HEALTH_EVERY:
                    checked = time.monotonic()
                    if self._resync:
                        log.info("syncing again after a failed sync")
                        self._resync = self._safe(self.store.sync) is None
                    if self._blind(self.observer):
                        # an emitter thread that died on an unexpected error would leave the daemon blind
                        log.warning("the file watcher stopped; starting it again and catching up")
                        self._safe(self._rewatch)  # if it fails, the next check tries again
        finally:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.release()
            log.info("stopped")

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
        except Exception:
            log.exception("unexpected error (the daemon keeps running)")
        return None

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)


def setup_logging(store: Store, level: int = logging.INFO) -> None:
    handler = logging.FileHandler(store.layout.daemon_log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("somna")
    root.addHandler(handler)
    root.setLevel(level)
