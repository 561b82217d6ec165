"""Change feeds: a named consumer sees every current row once, then every upsert and delete in
revision order.

Deletions are kept as tombstones in the graveyard table (``_statedb_graveyard``) only while some
consumer of that table has not passed them; the writer collects them once every registered
consumer has. A consumer registered later does not need earlier tombstones: its first batch is the
current rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from statedb.db import Database
    from statedb.table import Table

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Change(Generic[R]):
    row: R
    revision: int
    deleted: bool


class Consumer(Generic[R]):
    """One registered reader of a table's changes. Not thread-safe: one thread consumes."""

    def __init__(self, db: Database, name: str, table: Table[R], floor: int) -> None:
        self.db = db
        self.name = name
        self.table = table
        # Everything at or below `revision` has been handed out. Tombstones at or below `floor`
        # predate the consumer and are never delivered to it.
        self.revision = 0
        self.floor = floor
        self.closed = False

    @property
    def passed(self) -> int:
        """The revision up to which this consumer no longer needs tombstones."""
        return max(self.revision, self.floor)

    def changes(self, limit: int | None = None) -> list[Change[R]]:
        """The next changes in revision order (at most ``limit``), marking them as passed."""
        return self.db._next_changes(self, limit)

    def wait(self, timeout: float | None = None, until: Callable[[], bool] | None = None) -> bool:
        """Block until the table has changed past what this consumer has seen, or timeout.

        ``until`` (see ``Database.wait_for_change``) ends the wait early when it returns True.
        """
        return self.db.wait_for_change(self.table, self.revision, timeout, until) > self.revision

    def close(self) -> None:
        """Unregister: this consumer stops holding tombstones."""
        self.db._close_consumer(self)

    def __enter__(self) -> Consumer[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
