"""SQLite connections that can load sqlite-vec, and migrations known by name.

The pyenv / python.org builds of the standard sqlite3 module cannot load extensions, so somna
uses sqlean.py (a SQLite build that can) and falls back to the standard module where it can load
extensions. Both speak the DB-API; only the module differs.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from somna.errors import SomnaError

_depth = itertools.count()
Connection = Any  # sqlean.Connection or sqlite3.Connection: the same DB-API surface


class NoExtensionSupport(SomnaError):
    """No SQLite binding that can load sqlite-vec is installed."""


def _driver() -> ModuleType:
    try:
        import sqlean  # noqa: PLC0415 - chosen at run time, see module docstring

        return sqlean
    except ImportError:
        pass
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    raise NoExtensionSupport(
        "this Python's sqlite3 cannot load extensions, and sqlean.py is not installed: "
        "run `pip install sqlean.py` (scripts/setup.sh does) so sqlite-vec can load"
    )


def connect(path: Path | str, *, vec: bool = True) -> Connection:
    driver = _driver()
    conn = driver.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    if str(path) != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if vec:
        conn.enable_load_extension(True)
        conn.load_extension(_vec0_path())
        conn.enable_load_extension(False)
    return conn


@functools.cache
def _vec0_path() -> str:
    """sqlite-vec's loadable extension, found without running the package's __init__: that imports
    numpy, ~100 ms that the MCP handshake would otherwise wait for."""
    spec = importlib.util.find_spec("sqlite_vec")
    if spec is None or not spec.submodule_search_locations:
        raise NoExtensionSupport(
            "sqlite-vec is not installed: run scripts/setup.sh (or pip install sqlite-vec)"
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "vec0")


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """BEGIN IMMEDIATE ... COMMIT, so concurrent writers queue instead of failing mid-way.

    Nested use becomes a savepoint inside the outer transaction.
    """
    if conn.in_transaction:
        name = f"sp_{id(conn)}_{_depth.__next__()}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


Migration = Callable[[Connection], None]


def migrate(conn: Connection, migrations: Sequence[Migration]) -> int:
    """Apply the migrations not yet applied, in order, with their records, in one transaction. A migration
    is known by its function's name, not by its place in the list, so one inserted later is never taken
    for one already applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (n INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    with transaction(conn):
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        last = conn.execute("SELECT COALESCE(MAX(n), 0) FROM _migrations").fetchone()[0]
        applied = 0
        for fn in migrations:
            if fn.__name__ in done:
                continue
            fn(conn)
            last += 1
            conn.execute("INSERT INTO _migrations (n, name) VALUES (?, ?)", (last, fn.__name__))
            applied += 1
    return applied
