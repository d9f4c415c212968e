"""Settings, read once at the edges (CLI, server) and passed down.

Environment:
    SOMNA_HOME        the user store (default ~/.somna)
    SOMNA_STORE       one store to use instead of the user/project pair
    SOMNA_EMBEDDER    minilm (default) | hash | none | a model path
    SOMNA_INSTRUCTIONS_BUDGET  tokens of core blocks in the server instructions (default 1500)
    SOMNA_LOG_LEVEL   DEBUG | INFO | WARNING (default WARNING)
    SOMNA_DAEMON      on (default) | off: whether `somna serve` starts the daemon of its stores
    SOMNA_DAEMON_LINGER  seconds a started daemon stays after the last server has gone (default 300)

A store may carry `somna.toml` (committed, shared with the team):

    [policy]               # per-path: apply edits at once, or queue them as proposals
    "blocks/*" = "propose"
    "memory/**" = "apply"

    [secrets]
    policy = "redact"      # redact | refuse | allow

    [sleep]                # per kind of consolidation: apply at once, or queue for review
    merge = "apply"        # also: supersede, link, fold (apply); archive, split (propose)
    [sleep.thresholds]     # cosine similarities
    duplicate = 0.9
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from somna.errors import InvalidInput

PROJECT_STORE_DIR = ".somna-store"


@dataclass(frozen=True)
class Settings:
    user_store: Path
    store: Path | None = None
    embedder: str = "minilm"
    instructions_budget: int = 1500
    log_level: str = "WARNING"
    cwd: Path = field(default_factory=Path.cwd)
    daemon: bool = True  # `somna serve` starts one daemon for each store it opens (background.py)
    daemon_linger: float = 300.0

    @classmethod
    def from_env(cls, *, store: str | None = None, cwd: Path | None = None) -> Settings:
        env = os.environ
        home = Path(env.get("SOMNA_HOME") or Path.home() / ".somna").expanduser()
        chosen = store or env.get("SOMNA_STORE")
        try:
            budget = int(env.get("SOMNA_INSTRUCTIONS_BUDGET", "1500"))
        except ValueError:
            raise InvalidInput("SOMNA_INSTRUCTIONS_BUDGET must be a whole number of tokens") from None
        try:
            linger = max(0.0, float(env.get("SOMNA_DAEMON_LINGER", "300")))
        except ValueError:
            raise InvalidInput("SOMNA_DAEMON_LINGER must be a number of seconds") from None
        return cls(
            user_store=home,
            store=Path(chosen).expanduser() if chosen else None,
            embedder=env.get("SOMNA_EMBEDDER", "minilm"),
            instructions_budget=budget,
            log_level=env.get("SOMNA_LOG_LEVEL", "WARNING").upper(),
            cwd=cwd or Path.cwd(),
            daemon=env.get("SOMNA_DAEMON", "on").strip().lower() not in ("off", "0", "false", "no"),
            daemon_linger=linger,
        )

    def project_store(self) -> Path | None:
        """The nearest `.somna-store/` at or above the working directory, if any."""
        for d in (self.cwd, *self.cwd.parents):
            cand = d / PROJECT_STORE_DIR
            if (cand / ".git").exists() or (cand / "memory").is_dir():
                return cand
        return None

    def store_paths(self) -> dict[str, Path]:
        """scope -> path, project first: the stores this process opens."""
        if self.store is not None:
            return {"store": self.store}
        paths: dict[str, Path] = {}
        project = self.project_store()
        if project is not None:
            paths["project"] = project
        paths["user"] = self.user_store
        return paths


@dataclass(frozen=True)
class StoreConfig:
    policy: dict[str, str] = field(default_factory=dict)
    secrets: str = "redact"
    sleep_policy: dict[str, str] = field(default_factory=dict)
    sleep_thresholds: dict[str, float] = field(default_factory=dict)
    watch: tuple[str, ...] = ()  # [daemon] watch: folders of harness transcripts the daemon captures from

    @classmethod
    def load(cls, root: Path) -> StoreConfig:
        path = root / "somna.toml"
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not valid TOML: {exc}") from None
        policy = {str(k): str(v) for k, v in (data.get("policy") or {}).items()}
        for k, v in policy.items():
            if v not in ("apply", "propose"):
                raise InvalidInput(f"{path}: policy for {k!r} must be 'apply' or 'propose', not {v!r}")
        secrets = str((data.get("secrets") or {}).get("policy", "redact"))
        if secrets not in ("redact", "refuse", "allow"):
            raise InvalidInput(f"{path}: secrets.policy must be redact, refuse or allow")
        sleep = dict(data.get("sleep") or {})
        thresholds = sleep.pop("thresholds", {}) or {}
        for kind, action in sleep.items():
            if action not in ("apply", "propose"):
                raise InvalidInput(f"{path}: sleep.{kind} must be 'apply' or 'propose', not {action!r}")
        if not isinstance(thresholds, dict) or not all(
            isinstance(v, int | float) for v in thresholds.values()
        ):
            raise InvalidInput(f"{path}: sleep.thresholds must map names to numbers")
        watch = (data.get("daemon") or {}).get("watch", [])
        if isinstance(watch, str):
            watch = [watch]
        if not isinstance(watch, list) or not all(isinstance(w, str) and w.strip() for w in watch):
            raise InvalidInput(f'{path}: daemon.watch must be a list of folders, e.g. ["~/.claude/projects"]')
        return cls(
            policy=policy,
            secrets=secrets,
            sleep_policy={str(k): str(v) for k, v in sleep.items()},
            sleep_thresholds={str(k): v for k, v in thresholds.items()},
            watch=tuple(watch),
        )

    def policy_for(self, relpath: str) -> str:
        """The first matching glob decides; edits apply at once by default."""
        for pattern, action in self.policy.items():
            if fnmatch.fnmatch(relpath, pattern):
                return action
        return "apply"
