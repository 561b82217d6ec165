"""The writer's side of the state database: one SQLite file in WAL mode, one writing process.

Why plain ``sqlite3`` in places (sqlite-utils does schema creation, indexes and row queries):
- transaction control (BEGIN IMMEDIATE / SAVEPOINT / COMMIT / ROLLBACK) must be explicit, and the
  commit must wake in-process waiters; sqlite-utils has no transaction API and CPython's sqlite3
  has no update hook, so the commit wrapper signals a Condition;
- an upsert must skip identical rows so no revision is spent on them and stamp the revision in the
  same statement; sqlite-utils' upsert always writes, so the statement is generated per table
  (``Table.sql_upsert``: INSERT ... ON CONFLICT DO UPDATE ... WHERE old IS NOT new);
- deletes use ``DELETE ... RETURNING`` to move the old row to the graveyard in one step.

In-process readers go through the same connection under the writer lock, so they only ever see
committed state; other processes use ``statedb.readonly``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from statedb.changes import Change, Consumer
from statedb.errors import (
    StateDBError,
    TableNotLockedForWriting,
    TransactionClosed,
    UnknownTable,
    WriterLocked,
)
from statedb.schema import META_TABLES, create_meta_tables, create_table, drop_table
from statedb.table import Table

R = TypeVar("R")

_GRAVEYARD_INSERT = (
    "INSERT OR REPLACE INTO _statedb_graveyard (tbl, pk, revision, row) VALUES (?, ?, ?, ?)"
)


def _pk_text(key: Sequence[Any]) -> str:
    return json.dumps(list(key), separators=(",", ":"))


class _Reader:
    """Queries shared by read and write transactions of the writer process."""

    _conn: sqlite3.Connection
    _db: Database

    def _check(self, table: Table[Any]) -> None:
        if table.name not in self._db.tables:
            raise UnknownTable(table.name, sorted(self._db.tables))

    def get(self, table: Table[R], *key: Any) -> R | None:
        found = self.get_with_revision(table, *key)
        return found[0] if found else None

    def get_with_revision(self, table: Table[R], *key: Any) -> tuple[R, int] | None:
        self._check(table)
        values = self._conn.execute(table.sql_get, key).fetchone()
        if values is None:
            return None
        return table.decode(values), values[-1]

    def all(self, table: Table[R]) -> list[R]:
        return [row for row, _rev in self.all_with_revision(table)]

    def all_with_revision(self, table: Table[R]) -> list[tuple[R, int]]:
        self._check(table)
        cur = self._conn.execute(table.sql_select + table.sql_order)
        return [(table.decode(v), v[-1]) for v in cur]

    def list(self, table: Table[R], index: str, *values: Any) -> list[R]:
        """Rows whose secondary index ``index`` equals ``values``, in primary-key order."""
        self._check(table)
        try:
            sql = table.sql_list[index]
        except KeyError:
            raise StateDBError(f'table "{table.name}" has no index "{index}"') from None
        args = tuple(int(v) if isinstance(v, bool) else v for v in values)
        cur = self._conn.execute(sql, args)
        return [table.decode(v) for v in cur]

    def revision(self, table: Table[Any]) -> int:
        """The revision of the table's last change (row write or delete)."""
        self._check(table)
        return self._db._table_revision[table.name]

    def initialized(self, table: Table[Any]) -> bool:
        self._check(table)
        return self._db._initialized_locked(table.name)


class ReadTxn(_Reader):
    """A read of committed state in the writer process (holds the writer lock while open)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = db._conn


class WriteTxn(_Reader):
    """A write transaction over the tables named at its start; all or nothing.

    Each row written gets the next global revision. Rewriting an identical row is a no-op. Use it
    as a context manager: it commits when the block ends normally and rolls back on an exception.
    """

    def __init__(self, db: Database, tables: Sequence[Table[Any]]) -> None:
        self._db = db
        self._conn = db._conn
        self._locked = {t.name for t in tables}
        for t in tables:
            self._check(t)
        self._open = True
        self._next = db._revision + 1
        self._touched: dict[str, int] = {}  # table name -> its newest revision in this txn
        self._tombstones: dict[str, int] = {}  # table name -> tombstones added (net)
        self._init_changed = False
        self._savepoints = 0

    # -- writes -----------------------------------------------------------------------------

    def _writable(self, table: Table[Any]) -> None:
        if not self._open:
            raise TransactionClosed()
        if table.name not in self._locked:
            raise TableNotLockedForWriting(table.name)

    def _stamp(self, table: Table[Any]) -> int:
        rev = self._next
        self._next += 1
        self._touched[table.name] = rev
        return rev

    def upsert(self, table: Table[R], row: R) -> bool:
        """Insert or replace ``row``; returns False (and spends no revision) if it was identical."""
        self._writable(table)
        values = table.encode(row)
        cur = self._conn.execute(table.sql_upsert, (*values, self._next))
        if cur.rowcount == 0:
            return False
        self._stamp(table)
        if self._tombstones_held(table.name):
            # A re-created key supersedes its tombstone.
            gone = self._conn.execute(
                "DELETE FROM _statedb_graveyard WHERE tbl = ? AND pk = ?",
                (table.name, _pk_text(table.key_from_values(values))),
            ).rowcount
            if gone:
                self._tombstones[table.name] = self._tombstones.get(table.name, 0) - gone
        return True

    def _tombstones_held(self, name: str) -> bool:
        """Whether the table may have tombstones (committed or added in this transaction); the
        common case, none, saves a DELETE per upsert."""
        held = self._db._tombstone_count.get(name, 0) + self._tombstones.get(name, 0)
        return held > 0

    def upsert_many(self, table: Table[R], rows: Iterable[R]) -> int:
        return sum(self.upsert(table, row) for row in rows)

    def delete(self, table: Table[R], row: R) -> bool:
        """Delete the row with ``row``'s primary key; False if there was none."""
        return self.delete_key(table, *table.key_of(row))

    def delete_key(self, table: Table[Any], *key: Any) -> bool:
        self._writable(table)
        old = self._conn.execute(table.sql_delete, key).fetchone()
        if old is None:
            return False
        rev = self._stamp(table)
        if self._db._tracks_deletes(table.name):
            self._conn.execute(
                _GRAVEYARD_INSERT,
                (table.name, _pk_text(key), rev, json.dumps(list(old[:-1]))),
            )
            self._tombstones[table.name] = self._tombstones.get(table.name, 0) + 1
        return True

    def delete_all(self, table: Table[Any]) -> int:
        """Delete every row (each one a change with its own revision)."""
        n = 0
        for values in self._conn.execute(table.sql_select).fetchall():
            n += self.delete_key(table, *table.key_from_values(values))
        return n

    def compare_and_swap(self, table: Table[R], row: R, revision: int) -> bool:
        """Write ``row`` only if the stored row with its key still has ``revision``.

        This is how a reconciler writes status back: a miss means the row changed meanwhile and
        will be reconciled again.
        """
        self._writable(table)
        values = table.encode(row)
        key = table.key_from_values(values)
        cur = self._conn.execute(
            table.sql_set_if_revision, (*table.data_values(values), self._next, *key, revision)
        )
        if cur.rowcount == 0:
            return False
        self._stamp(table)
        return True

    # -- initialization markers -------------------------------------------------------------------

    def register_initializer(self, table: Table[Any], name: str) -> None:
        """Declare that ``name`` must finish an initial sync before ``table`` is initialized."""
        self._writable(table)
        self._conn.execute(
            "INSERT OR IGNORE INTO _statedb_initializers (tbl, name, done) VALUES (?, ?, 0)",
            (table.name, name),
        )
        self._init_changed = True

    def initializer_done(self, table: Table[Any], name: str) -> None:
        self._writable(table)
        cur = self._conn.execute(
            "UPDATE _statedb_initializers SET done = 1 WHERE tbl = ? AND name = ?",
            (table.name, name),
        )
        if cur.rowcount == 0:
            raise StateDBError(f'no initializer "{name}" registered for table "{table.name}"')
        self._init_changed = True

    def initialized(self, table: Table[Any]) -> bool:
        """Whether every registered initializer is done, counting this transaction's marks."""
        self._check(table)
        return self._initialized_by_name(table.name)

    # -- transaction control ------------------------------------------------------------------

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[WriteTxn]:
        """A nested scope: rolled back alone if its block raises."""
        if not self._open:
            raise TransactionClosed()
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        saved = (self._next, dict(self._touched), dict(self._tombstones), self._init_changed)
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            self._next, self._touched, self._tombstones, self._init_changed = saved
            raise
        else:
            self._conn.execute(f"RELEASE {name}")

    def commit(self) -> int:
        """Publish every write at once; returns the global revision after the commit."""
        if not self._open:
            raise TransactionClosed()
        db = self._db
        try:
            last = self._next - 1
            if self._touched:
                self._conn.execute(
                    "UPDATE _statedb_meta SET value = ? WHERE key = 'revision'", (last,)
                )
                self._conn.executemany(
                    "UPDATE _statedb_tables SET revision = ? WHERE name = ?",
                    [(rev, name) for name, rev in self._touched.items()],
                )
            if self._init_changed:
                for name in self._locked:
                    self._conn.execute(
                        "UPDATE _statedb_tables SET initialized = ? WHERE name = ?",
                        (int(self._initialized_by_name(name)), name),
                    )
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._open = False
        if self._touched:
            db._revision = last
            db._table_revision.update(self._touched)
        for name, n in self._tombstones.items():
            db._tombstone_count[name] = db._tombstone_count.get(name, 0) + n
        db._finish_txn(changed=bool(self._touched) or self._init_changed)
        return db._revision

    def _initialized_by_name(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT COUNT(*), SUM(done) FROM _statedb_initializers WHERE tbl = ?", (name,)
        ).fetchone()
        return bool(row[0]) and row[0] == row[1]

    def _rollback(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self._db._finish_txn(changed=False)

    def abort(self) -> None:
        """Discard every write of this transaction."""
        if not self._open:
            raise TransactionClosed()
        self._rollback()

    def __enter__(self) -> WriteTxn:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._open:
            return
        if exc_type is None:
            self.commit()
        else:
            self._rollback()


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
        self._consumers: dict[str, list[Consumer[Any]]] = {}
        self._tombstone_count: dict[str, int] = {}
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
            self._conn.execute("BEGIN IMMEDIATE")
            return WriteTxn(self, tables)
        except BaseException:
            self._lock.release()
            raise

    def _finish_txn(self, changed: bool) -> None:
        if changed:
            self._changed.notify_all()
        self._lock.release()

    @contextlib.contextmanager
    def read_txn(self) -> Iterator[ReadTxn]:
        """Read committed state; waits for an open write transaction to finish."""
        with self._lock:
            yield ReadTxn(self)

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

    def _initialized_locked(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT initialized FROM _statedb_tables WHERE name = ?", (name,)
        ).fetchone()
        return bool(row and row[0])

    def initialized(self, table: Table[Any]) -> bool:
        with self._lock:
            return self._initialized_locked(table.name)

    def wait_initialized(self, table: Table[Any], timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(
                lambda: self._initialized_locked(table.name) or self._closed, timeout
            ) and self._initialized_locked(table.name)

    # -- change feeds -------------------------------------------------------------------------

    def register_consumer(self, name: str, table: Table[R]) -> Consumer[R]:
        """A new change feed of ``table``: first its current rows, then every change."""
        with self._lock:
            if table.name not in self.tables:
                raise UnknownTable(table.name, sorted(self.tables))
            consumers = self._consumers.setdefault(table.name, [])
            if any(c.name == name for c in consumers):
                raise StateDBError(f'consumer "{name}" of table "{table.name}" already exists')
            c = Consumer(self, name, table, floor=self._table_revision[table.name])
            consumers.append(c)
            return c

    def _tracks_deletes(self, name: str) -> bool:
        return bool(self._consumers.get(name))

    def _next_changes(self, consumer: Consumer[R], limit: int | None) -> list[Change[R]]:
        table = consumer.table
        with self._lock:
            if consumer.closed:
                raise StateDBError(f'consumer "{consumer.name}" is closed')
            lim = -1 if limit is None else limit
            live = self._conn.execute(
                f'{table.sql_select} WHERE "_revision" > ? ORDER BY "_revision" LIMIT ?',
                (consumer.revision, lim),
            ).fetchall()
            dead = self._conn.execute(
                "SELECT revision, row FROM _statedb_graveyard WHERE tbl = ? AND revision > ?"
                " ORDER BY revision LIMIT ?",
                (table.name, consumer.passed, lim),
            ).fetchall()
            changes: list[Change[R]] = [Change(table.decode(v), v[-1], False) for v in live]
            changes += [Change(table.decode(json.loads(row)), rev, True) for rev, row in dead]
            changes.sort(key=lambda c: c.revision)
            if limit is not None:
                changes = changes[:limit]
            if changes:
                consumer.revision = changes[-1].revision
            elif limit is None or limit > 0:
                # Nothing pending: the consumer has passed everything up to now. (Also with a
                # limit: otherwise a table whose revision came from deletes made before the
                # consumer registered would keep wait() returning at once, a busy loop.)
                consumer.revision = max(consumer.revision, self._table_revision[table.name])
            self._collect_tombstones(table.name)
            return changes

    def _collect_tombstones(self, name: str) -> None:
        if self._tombstone_count.get(name, 0) <= 0:
            return
        consumers = self._consumers.get(name, [])
        if consumers:
            low = min(c.passed for c in consumers)
            cur = self._conn.execute(
                "DELETE FROM _statedb_graveyard WHERE tbl = ? AND revision <= ?", (name, low)
            )
        else:
            cur = self._conn.execute("DELETE FROM _statedb_graveyard WHERE tbl = ?", (name,))
        self._tombstone_count[name] -= cur.rowcount

    def tombstones(self, table: Table[Any]) -> int:
        """How many deleted rows of ``table`` are kept for consumers (for tests and health)."""
        with self._lock:
            (n,) = self._conn.execute(
                "SELECT COUNT(*) FROM _statedb_graveyard WHERE tbl = ?", (table.name,)
            ).fetchone()
            return int(n)

    def _close_consumer(self, consumer: Consumer[Any]) -> None:
        with self._lock:
            if consumer.closed:
                return
            consumer.closed = True
            self._consumers[consumer.table.name].remove(consumer)
            self._collect_tombstones(consumer.table.name)

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
