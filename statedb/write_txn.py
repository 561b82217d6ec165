"""Write transactions: all or nothing over the tables named at their start.

Why plain ``sqlite3`` here (sqlite-utils does schema creation and indexes):
- transaction control (BEGIN IMMEDIATE / SAVEPOINT / COMMIT / ROLLBACK) must be explicit, and the
  commit must wake in-process waiters; sqlite-utils has no transaction API and CPython's sqlite3
  has no update hook, so the end of the transaction tells the database, which signals waiters;
- an upsert must skip identical rows so no revision is spent on them and stamp the revision in the
  same statement; sqlite-utils' upsert always writes, so the statement is generated per table
  (``Table.sql_upsert``: INSERT ... ON CONFLICT DO UPDATE ... WHERE old IS NOT new);
- deletes use ``DELETE ... RETURNING`` to hand the old row to the graveyard in one step.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from statedb.errors import StateDBError, TableNotLockedForWriting, TransactionClosed
from statedb.graveyard import Graveyard
from statedb.read_txn import Reader
from statedb.table import Table

if TYPE_CHECKING:
    from statedb.db import Database

R = TypeVar("R")


class WriteTxn(Reader):
    """A write transaction over the tables named at its start; all or nothing.

    Each row written gets the next global revision. Rewriting an identical row is a no-op. Use it
    as a context manager: it commits when the block ends normally and rolls back on an exception.
    Begun by ``Database.write_txn``, which holds the database lock until the transaction ends.
    """

    def __init__(
        self,
        db: Database,
        conn: sqlite3.Connection,
        graveyard: Graveyard,
        tables: Sequence[Table[Any]],
    ) -> None:
        super().__init__(db, conn)
        self._graveyard = graveyard
        self._locked = {t.name for t in tables}
        for t in tables:
            self._check(t)
        self._open = True
        self._next = db.revision() + 1
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
        # A re-created key supersedes its tombstone.
        pending = self._tombstones.get(table.name, 0)
        dropped = self._graveyard.drop(table, values, pending)
        if dropped:
            self._tombstones[table.name] = pending - dropped
        return True

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
        if self._graveyard.add(table, key, rev, old[:-1]):
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

    def _initialized_by_name(self, name: str) -> bool:
        row = self._conn.execute(
            "SELECT COUNT(*), SUM(done) FROM _statedb_initializers WHERE tbl = ?", (name,)
        ).fetchone()
        return bool(row[0]) and row[0] == row[1]

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
        last = self._next - 1  # the revision before this transaction if it changed no row
        try:
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
        self._graveyard.committed(self._tombstones)
        self._db._end_write(self._touched, changed=bool(self._touched) or self._init_changed)
        return last

    def _rollback(self) -> None:
        if self._open:
            self._open = False
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self._db._end_write({}, changed=False)

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
