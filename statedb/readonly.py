"""Read-only access from another process (l2dbg, a sidecar) while the writer commits.

Opening never creates or modifies anything: a missing file is an error, and when no writer is
running (no ``-wal`` file) the file is opened ``immutable`` so SQLite does not create its
``-wal``/``-shm`` companions; once a writer is live, the next snapshot reopens it normally (an
immutable connection would never see a change). Each ``snapshot()`` is one read transaction, so
every query in it sees the same committed state (WAL gives readers a stable snapshot while the
writer goes on).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

from statedb.errors import StateDBError, StateDBNotFound
from statedb.table import Table

R = TypeVar("R")


class Snapshot:
    """One consistent view of the whole database."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def table_names(self) -> list[str]:
        """Names of the tables the writer has registered (``l2-announce``, not ``l2_announce``)."""
        try:
            return [r[0] for r in self._conn.execute("SELECT name FROM _statedb_tables")]
        except sqlite3.DatabaseError as e:
            raise StateDBError(f"not a state database: {e}") from None

    def has_table(self, table: Table[Any]) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM _statedb_tables WHERE name = ?", (table.name,)
        ).fetchone()
        return row is not None

    def revision(self, table: Table[Any] | None = None) -> int:
        if table is None:
            row = self._conn.execute(
                "SELECT value FROM _statedb_meta WHERE key = 'revision'"
            ).fetchone()
        else:
            row = self._conn.execute(
                "SELECT revision FROM _statedb_tables WHERE name = ?", (table.name,)
            ).fetchone()
        return int(row[0]) if row else 0

    def initialized(self, table: Table[Any]) -> bool:
        row = self._conn.execute(
            "SELECT initialized FROM _statedb_tables WHERE name = ?", (table.name,)
        ).fetchone()
        return bool(row and row[0])

    def rows(self, table: Table[R]) -> list[R]:
        """Every row, in primary-key order."""
        return [row for row, _rev in self.rows_with_revision(table)]

    def rows_with_revision(self, table: Table[R]) -> list[tuple[R, int]]:
        # The table's own generated SELECT (as the writer uses), not sqlite-utils: importing it
        # would cost l2dbg ~45 ms of its 150 ms start-up budget.
        found = self._conn.execute(table.sql_select + table.sql_order)
        pairs = [(table.decode(v), v[-1]) for v in found]
        if table.sort_key is not None:
            key = table.sort_key
            pairs.sort(key=lambda p: key(p[0]))
        return pairs


def wal_path(file: Path) -> Path:
    """SQLite's write-ahead log of ``file``: present while a writer has it open."""
    return file.with_name(file.name + "-wal")


def _connect(file: Path, live: bool) -> sqlite3.Connection:
    uri = f"file:{file.resolve()}?mode=ro" + ("" if live else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=2000")
        conn.execute("PRAGMA query_only=1")
    except sqlite3.Error as e:
        raise StateDBError(f"cannot open {file} read-only: {e}") from None
    return conn


class ReadOnlyDatabase:
    def __init__(self, conn: sqlite3.Connection, path: Path, live: bool) -> None:
        self._conn = conn
        self.path = path
        self._live = live

    @classmethod
    def open(cls, path: str | Path) -> ReadOnlyDatabase:
        file = Path(path)
        if not file.is_file():
            raise StateDBNotFound(f"no state database at {file}")
        live = wal_path(file).exists()
        return cls(_connect(file, live), file, live)

    def _refresh(self) -> None:
        """An immutable open never sees changes: once a writer is live, reopen normally."""
        if not self._live and wal_path(self.path).exists():
            conn = _connect(self.path, live=True)
            self._conn.close()
            self._conn = conn
            self._live = True

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        self._refresh()
        self._conn.execute("BEGIN")
        try:
            yield Snapshot(self._conn)
        finally:
            self._conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap 'did anything change?' probe."""
        self._refresh()
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReadOnlyDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
