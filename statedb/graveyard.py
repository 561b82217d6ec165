"""The graveyard: tombstones of deleted rows, kept until every consumer of their table has read them.

A delete writes its tombstone (the primary key, the delete's revision and the old row as JSON)
into ``_statedb_graveyard`` in the same transaction, but only while the table has a consumer:
with nobody to tell, a delete leaves nothing behind. A consumer registered later starts from the
current rows and never needs older tombstones. Once every consumer of a table has passed a
tombstone's revision it is collected (after a consumer reads, or when one closes). A re-created
key drops its tombstone: consumers will see the new row instead.

Every method runs under the database lock, held by the write transaction that calls it or taken
by the consumer: the graveyard shares the writer's connection, and the lock also guards the lists
of consumers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from statedb.errors import StateDBError
from statedb.table import Table

R = TypeVar("R")


class DeleteTracker(Protocol):
    """A consumer as the graveyard sees it: the table it reads and how far it has read."""

    @property
    def name(self) -> str: ...

    @property
    def table(self) -> Table[Any]: ...

    @property
    def passed(self) -> int:
        """The revision up to which it no longer needs tombstones."""
        ...


def _pk_text(key: Sequence[Any]) -> str:
    return json.dumps(list(key), separators=(",", ":"))


class Graveyard:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._trackers: dict[str, list[DeleteTracker]] = {}  # table name -> its consumers
        # Committed tombstones per table, kept in memory so that the common case, none, costs no
        # query: an upsert need not look for a tombstone to drop, a read need not collect.
        self._count: dict[str, int] = {}

    # -- consumers ----------------------------------------------------------------------------

    def track(self, tracker: DeleteTracker) -> None:
        """Keep the tombstones of ``tracker.table`` from now on until ``tracker`` passes them."""
        trackers = self._trackers.setdefault(tracker.table.name, [])
        if any(t.name == tracker.name for t in trackers):
            raise StateDBError(
                f'consumer "{tracker.name}" of table "{tracker.table.name}" already exists'
            )
        trackers.append(tracker)

    def untrack(self, tracker: DeleteTracker) -> None:
        """Stop holding tombstones for ``tracker``, collecting those nobody else needs."""
        self._trackers[tracker.table.name].remove(tracker)
        self.collect(tracker.table.name)

    # -- inside a write transaction (which counts what it adds and drops until it commits) ------

    def add(self, table: Table[Any], key: Sequence[Any], revision: int, old: Sequence[Any]) -> bool:
        """Keep a tombstone of the deleted row ``old`` if some consumer needs it; True if kept."""
        if not self._trackers.get(table.name):
            return False
        self._conn.execute(
            "INSERT OR REPLACE INTO _statedb_graveyard (tbl, pk, revision, row) VALUES (?, ?, ?, ?)",
            (table.name, _pk_text(key), revision, json.dumps(list(old))),
        )
        return True

    def drop(self, table: Table[Any], values: Sequence[Any], uncommitted: int) -> int:
        """Drop the tombstone of the key of a re-created row (its column ``values``); how many
        were dropped (0 or 1). ``uncommitted`` is the calling transaction's net count of
        tombstones added to the table.

        Called for every upsert that changed something: the common case, no tombstone, returns
        before computing the key.
        """
        if self._count.get(table.name, 0) + uncommitted <= 0:
            return 0
        return self._conn.execute(
            "DELETE FROM _statedb_graveyard WHERE tbl = ? AND pk = ?",
            (table.name, _pk_text(table.key_from_values(values))),
        ).rowcount

    def committed(self, added: Mapping[str, int]) -> None:
        """A write transaction committed, with ``added`` tombstones per table (net, may be < 0)."""
        for name, n in added.items():
            self._count[name] = self._count.get(name, 0) + n

    # -- reading and collecting ---------------------------------------------------------------

    def since(self, table: Table[R], revision: int, limit: int | None) -> list[tuple[R, int]]:
        """The deleted rows of ``table`` after ``revision`` (at most ``limit``), in revision order."""
        found = self._conn.execute(
            "SELECT revision, row FROM _statedb_graveyard WHERE tbl = ? AND revision > ?"
            " ORDER BY revision LIMIT ?",
            (table.name, revision, -1 if limit is None else limit),
        ).fetchall()
        return [(table.decode(json.loads(row)), rev) for rev, row in found]

    def collect(self, name: str) -> None:
        """Delete the tombstones of table ``name`` that every consumer has passed."""
        if self._count.get(name, 0) <= 0:
            return
        trackers = self._trackers.get(name)
        if trackers:
            low = min(t.passed for t in trackers)
            cur = self._conn.execute(
                "DELETE FROM _statedb_graveyard WHERE tbl = ? AND revision <= ?", (name, low)
            )
        else:
            cur = self._conn.execute("DELETE FROM _statedb_graveyard WHERE tbl = ?", (name,))
        self._count[name] -= cur.rowcount

    def count(self, name: str) -> int:
        """How many tombstones of table ``name`` are stored."""
        (n,) = self._conn.execute(
            "SELECT COUNT(*) FROM _statedb_graveyard WHERE tbl = ?", (name,)
        ).fetchone()
        return int(n)
