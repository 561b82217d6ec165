"""Reading committed state in the writer process.

An in-process read goes through the writer's own connection while holding the database lock, so
it only ever sees committed state (a write transaction holds the same lock from BEGIN to COMMIT).
Other processes read through ``statedb.readonly`` instead.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, TypeVar

from statedb.errors import UnknownTable
from statedb.table import Index, Table

if TYPE_CHECKING:
    from statedb.db import Database

R = TypeVar("R")


def table_initialized(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the committed ``_statedb_tables`` row of table ``name`` says it is initialized."""
    row = conn.execute("SELECT initialized FROM _statedb_tables WHERE name = ?", (name,)).fetchone()
    return bool(row and row[0])


class Reader:
    """The queries of read and write transactions alike."""

    def __init__(self, db: Database, conn: sqlite3.Connection) -> None:
        self._db = db
        self._conn = conn

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

    def changed_since(
        self, table: Table[R], revision: int, limit: int | None = None
    ) -> list[tuple[R, int]]:
        """Rows written after ``revision`` (at most ``limit``), in revision order: the live half
        of a change feed (deleted rows are in the graveyard)."""
        self._check(table)
        cur = self._conn.execute(table.sql_since, (revision, -1 if limit is None else limit))
        return [(table.decode(v), v[-1]) for v in cur]

    # Defined after the methods annotated with ``list[...]``: within the class body the name
    # means this method from here on.
    def list(self, index: Index[R], *values: Any) -> list[R]:
        """Rows whose ``index`` columns equal ``values``, in primary-key order."""
        table = index.table
        self._check(table)
        args = tuple(int(v) if isinstance(v, bool) else v for v in values)
        cur = self._conn.execute(index.sql_list, args)
        return [table.decode(v) for v in cur]

    def revision(self, table: Table[Any]) -> int:
        """The revision of the table's last committed change (row write or delete)."""
        self._check(table)
        return self._db.revision(table)

    def initialized(self, table: Table[Any]) -> bool:
        self._check(table)
        return table_initialized(self._conn, table.name)


class ReadTxn(Reader):
    """A read of committed state in the writer process (holds the database lock while open)."""
