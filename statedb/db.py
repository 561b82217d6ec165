"""The state database of the writer process: one SQLite file in WAL mode, one writing process.

``Database`` opens the file (taking the writer lock), creates the schema, begins transactions
(``write_txn.py``, ``read_txn.py``), registers change-feed consumers (``changes.py``, whose
deletions the ``graveyard.py`` keeps), and wakes the threads waiting for a change when a
transaction commits. It also answers whether a table is initialized.

In-process readers go through the same connection under the database lock, so they only ever see
committed state; other processes use ``statedb.readonly``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from statedb.changes import Consumer
from statedb.errors import StateDBError, WriterLocked
from statedb.graveyard import Graveyard
from statedb.read_txn import ReadTxn, table_initialized
from statedb.schema import META_TABLES, create_meta_tables, create_table, drop_table
from statedb.table import Table
from statedb.write_txn import WriteTxn

R = TypeVar("R")


class Database:
    """The state database of the writer process. Open with ``Database.open``."""

    def __init__(
        self, conn: sqlite3.Connection, tables: Iterable[Table[Any]], path: Path | None
    ) -> None:
        self._conn = conn
        self.path = path
        self.tables: dict[str, Table[Any]] = {t.name: t for t in tables}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._revision = 0
        self._table_revision: dict[str, int] = {}
        self._graveyard = Graveyard(conn)
        self._lockfile: int | None = None
        self._closed = False

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None, tables: Iterable[Table[Any]]) -> Database:
        """Open (creating if needed) the database at ``path``; None or ":memory:" for tests.

        Only one process may write a database file; a second writer gets WriterLocked. The tables
        are recreated empty (a starting writer rebuilds its state from its sources), while the
        global revision carries on from where the file left it.
        """
        tables = list(tables)
        lockfd: int | None = None
        if path is None or str(path) == ":memory:":
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            file: Path | None = None
        else:
            file = Path(path)
            file.parent.mkdir(parents=True, exist_ok=True)
            lockfd = _take_writer_lock(file)
            conn = sqlite3.connect(str(file), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a killed process; only power loss can undo the
            # last commits, and the file lives on a tmpfs anyway.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        db = cls(conn, tables, file)
        db._lockfile = lockfd
        db._create_schema()
        return db

    def _create_schema(self) -> None:
        sdb = sqlite_utils.Database(self._conn)
        create_meta_tables(sdb)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for (name,) in self._conn.execute("SELECT sql_name FROM _statedb_tables").fetchall():
                drop_table(self._conn, name)
            self._conn.execute("DELETE FROM _statedb_tables")
            self._conn.execute("DELETE FROM _statedb_graveyard")
            self._conn.execute("DELETE FROM _statedb_initializers")
            for t in self.tables.values():
                if t.sql_name in META_TABLES:
                    raise StateDBError(f"table name {t.sql_name!r} is reserved")
                drop_table(self._conn, t.sql_name)
            self._conn.execute(
                "UPDATE _statedb_meta SET value = ? WHERE key = 'writer_pid'", (os.getpid(),)
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        # sqlite-utils creates the tables and their indexes (DDL commits on its own).
        for t in self.tables.values():
            create_table(sdb, t)
        (rev,) = self._conn.execute(
            "SELECT value FROM _statedb_meta WHERE key = 'revision'"
        ).fetchone()
        self._revision = int(rev)
        self._table_revision = {name: 0 for name in self.tables}

    # -- transactions -------------------------------------------------------------------------

    def write_txn(self, *tables: Table[Any]) -> WriteTxn:
        """Begin a write transaction over ``tables`` (blocks while another one is open)."""
        if not tables:
            raise StateDBError("a write transaction must name the tables it writes")
        self._lock.acquire()
        try:
            if self._closed:
                raise StateDBError("the database is closed")
            # Built before BEGIN: naming an unknown table must not leave a transaction open.
            txn = WriteTxn(self, self._conn, self._graveyard, tables)
            self._conn.execute("BEGIN IMMEDIATE")
            return txn
        except BaseException:
            self._lock.release()
            raise

    def _end_write(self, table_revisions: Mapping[str, int], changed: bool) -> None:
        """How a write transaction ends, still holding the lock ``write_txn`` took: publish the
        revisions it committed (none after a rollback), wake the waiters if anything changed,
        and let the next transaction in."""
        if table_revisions:
            self._table_revision.update(table_revisions)
            self._revision = max(self._revision, *table_revisions.values())
        if changed:
            self._changed.notify_all()
        self._lock.release()

    @contextlib.contextmanager
    def read_txn(self) -> Iterator[ReadTxn]:
        """Read committed state; waits for an open write transaction to finish."""
        with self._lock:
            yield ReadTxn(self, self._conn)

    def revision(self, table: Table[Any] | None = None) -> int:
        """The global revision, or the revision of ``table``'s last change."""
        with self._lock:
            return self._revision if table is None else self._table_revision[table.name]

    # -- waiting ------------------------------------------------------------------------------

    def wait_for_change(
        self,
        table: Table[Any],
        after: int,
        timeout: float | None,
        until: Callable[[], bool] | None = None,
    ) -> int:
        """Block until ``table``'s revision passes ``after`` (or timeout); returns the revision.

        Woken by the commit itself, not by polling. ``until``, when given, also ends the wait once
        it returns True; it is checked under the database lock at every notification (each commit
        that changed something, including initialization markers, and ``notify_waiters()``), so
        it must be cheap and must not block. A background loop uses it to be told to stop, or to
        notice something other than a row change, while it waits.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._table_revision[table.name] > after
                    or self._closed
                    or (until is not None and until())
                ),
                timeout,
            )
            return self._table_revision[table.name]

    def wait_for_any(
        self,
        after: Mapping[Table[Any], int],
        timeout: float | None,
        until: Callable[[], bool] | None = None,
    ) -> bool:
        """Block until any of the tables' revisions passes its given revision, ``until()`` holds,
        or timeout; True unless it timed out. For a loop that consumes several tables."""
        names = [(t.name, rev) for t, rev in after.items()]
        with self._changed:
            return bool(
                self._changed.wait_for(
                    lambda: (
                        self._closed
                        or any(self._table_revision[n] > rev for n, rev in names)
                        or (until is not None and until())
                    ),
                    timeout,
                )
            )

    def notify_waiters(self) -> None:
        """Wake every thread blocked in a wait so it re-checks its condition (see ``until``)."""
        with self._changed:
            self._changed.notify_all()

    # -- initialization -----------------------------------------------------------------------

    def initialized(self, table: Table[Any]) -> bool:
        """Whether every initializer registered for ``table`` is done (see ``WriteTxn``)."""
        with self._lock:
            return table_initialized(self._conn, table.name)

    def wait_initialized(self, table: Table[Any], timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: table_initialized(self._conn, table.name) or self._closed, timeout
            ) and table_initialized(self._conn, table.name)

    # -- change feeds -------------------------------------------------------------------------

    def register_consumer(self, name: str, table: Table[R]) -> Consumer[R]:
        """A new change feed of ``table``: first its current rows, then every change."""
        with self.read_txn() as txn:
            consumer = Consumer(self, self._graveyard, name, table, floor=txn.revision(table))
            self._graveyard.track(consumer)
            return consumer

    def tombstones(self, table: Table[Any]) -> int:
        """How many deleted rows of ``table`` are kept for consumers (for tests and health)."""
        with self._lock:
            return self._graveyard.count(table.name)

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
            self._conn.close()
            if self._lockfile is not None:
                os.close(self._lockfile)
                self._lockfile = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _take_writer_lock(file: Path) -> int:
    lock_path = file.with_name(file.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise WriterLocked(f"{file} is already written by another process (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
