"""Change feeds: a named consumer sees every current row once, then every upsert and delete in
revision order.

A feed merges two sources: the live rows written after the consumer's revision (every row carries
the revision of its last write) and the tombstones the graveyard keeps for it (``graveyard.py``).
A consumer registered later does not need earlier tombstones: its first batch is the current rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from statedb.errors import StateDBError

if TYPE_CHECKING:
    from statedb.db import Database
    from statedb.graveyard import Graveyard
    from statedb.table import Table

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Change(Generic[R]):
    row: R
    revision: int
    deleted: bool


class Consumer(Generic[R]):
    """One registered reader of a table's changes (``Database.register_consumer``).

    Not thread-safe: one thread consumes.
    """

    def __init__(
        self, db: Database, graveyard: Graveyard, name: str, table: Table[R], floor: int
    ) -> None:
        self._db = db
        self._graveyard = graveyard
        self.name = name
        self.table = table
        # Everything at or below `revision` has been handed out. Tombstones at or below `floor`
        # predate the consumer and are never delivered to it.
        self.revision = 0
        self._floor = floor
        self._closed = False

    @property
    def passed(self) -> int:
        """The revision up to which this consumer no longer needs tombstones."""
        return max(self.revision, self._floor)

    def changes(self, limit: int | None = None) -> list[Change[R]]:
        """The next changes in revision order (at most ``limit``), marking them as passed."""
        table = self.table
        # The read transaction holds the database lock, under which the graveyard works too.
        with self._db.read_txn() as txn:
            if self._closed:
                raise StateDBError(f'consumer "{self.name}" is closed')
            live = txn.changed_since(table, self.revision, limit)
            dead = self._graveyard.since(table, self.passed, limit)
            changes = [Change(row, rev, False) for row, rev in live]
            changes += [Change(row, rev, True) for row, rev in dead]
            changes.sort(key=lambda c: c.revision)
            if limit is not None:
                changes = changes[:limit]
            if changes:
                self.revision = changes[-1].revision
            elif limit is None or limit > 0:
                # Nothing pending: the consumer has passed everything up to now. (Also with a
                # limit: otherwise a table whose revision came from deletes made before the
                # consumer registered would keep wait() returning at once, a busy loop.)
                self.revision = max(self.revision, txn.revision(table))
            self._graveyard.collect(table.name)
            return changes

    def wait(self, timeout: float | None = None, until: Callable[[], bool] | None = None) -> bool:
        """Block until the table has changed past what this consumer has seen, or timeout.

        ``until`` (see ``Database.wait_for_change``) ends the wait early when it returns True.
        """
        return self._db.wait_for_change(self.table, self.revision, timeout, until) > self.revision

    def close(self) -> None:
        """Unregister: this consumer stops holding tombstones."""
        with self._db.read_txn():  # the database lock, as in changes()
            if self._closed:
                return
            self._closed = True
            self._graveyard.untrack(self)
