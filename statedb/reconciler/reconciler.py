"""The reconciler: pushes the rows of one table into a target (a BPF map, the kernel) and writes
the outcome back onto each row's ``Status``.

``run(stopping)`` is the loop; the caller runs it in a thread of its own (the agent's runtime
job) and calls ``wake()`` after setting ``stopping``. The loop runs rounds::

    wait (change feed | retry due | prune due | wake)     <- Consumer.wait, no polling
      -> changes: Pending rows -> update, deleted rows -> delete   (other rows: our own status
         writes coming back, skipped)
      -> due retries (per-row exponential backoff)
      -> operations run outside the database lock
      -> ONE write transaction: compare_and_swap(row + Done/Error, reconciled revision)
         (a miss means the row changed meanwhile: its newer revision is already in the feed)
      -> prune, once the table is initialized: right then, then every prune_interval

Only the loop thread touches the consumer, the retry queue and the prune schedule; other threads
(``health()``, ``wait_until_reconciled()``) read a summary published under ``_lock`` at the end
of each round. The reconciler creates no thread itself: statedb is a library, and whoever runs the
loop decides how it is supervised.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from statedb.changes import Consumer
from statedb.db import Database
from statedb.reconciler.clock import Clock
from statedb.reconciler.config import Config
from statedb.reconciler.operations import Operations, PermanentError
from statedb.reconciler.retries import RetryItem, RetryQueue
from statedb.status import Status, StatusKind
from statedb.table import Table

R = TypeVar("R")
Key = tuple[Hashable, ...]

log = logging.getLogger(__name__)

MAX_HEALTH_ERRORS = 10  # errors spelled out in health(); the rest are counted


@dataclass(frozen=True, slots=True)
class ReconcilerHealth:
    """What ``health()`` returns: the errors in force (rows in Error, failed deletes waiting for a
    retry, the last prune's failure, an unexpected error of the loop) and the rows reconciled.

    ``str()`` is the line a person reads: ``OK, N object(s)`` or ``Degraded: <errors>``.
    """

    errors: tuple[str, ...]
    objects: int

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def message(self) -> str:
        """The detail without the level: the object count, or the errors (at most
        ``MAX_HEALTH_ERRORS`` spelled out, the rest counted)."""
        if not self.errors:
            return f"{self.objects} object(s)"
        shown = list(self.errors[:MAX_HEALTH_ERRORS])
        if len(self.errors) > MAX_HEALTH_ERRORS:
            shown.append(f"and {len(self.errors) - MAX_HEALTH_ERRORS} more")
        return "; ".join(shown)

    def __str__(self) -> str:
        return f"OK, {self.message}" if self.ok else f"Degraded: {self.message}"


@dataclass(frozen=True, slots=True)
class _Work(Generic[R]):
    key: Key
    row: R
    revision: int  # the revision reconciled; the status is written back only if it is unchanged
    delete: bool


def _message(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _key_text(key: Key) -> str:
    return str(key[0]) if len(key) == 1 else "(" + ", ".join(str(k) for k in key) + ")"


class Reconciler(Generic[R]):
    """Reconciles ``table`` (whose rows carry a ``Status`` field) into a target via ``ops``."""

    def __init__(
        self,
        db: Database,
        table: Table[R],
        ops: Operations[R],
        config: Config | None = None,
        *,
        clock: Clock,
        name: str | None = None,
    ) -> None:
        if table.status_field is None:
            raise TypeError(f"table {table.name!r} has no Status field to reconcile")
        self.db = db
        self.table = table
        self.ops = ops
        self.config = config or Config()
        self.name = name or f"reconciler:{table.name}"
        self._status_field: str = table.status_field
        self._clock = clock

        # Loop-thread state.
        self._consumer: Consumer[R] | None = None
        self._retries: RetryQueue[Key, R] = RetryQueue(self.config.retry_min, self.config.retry_max)
        self._live: set[Key] = set()  # keys of the table's rows, as seen in the feed
        self._initialized = False
        self._next_prune: float | None = None  # monotonic; None until initialized

        # Signals from other threads. ``_stopping`` is the event ``run`` was given.
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._prune_requested = threading.Event()
        self._running = False

        # Published at the end of each round, read by health() and wait_until_reconciled().
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._done_revision = -1  # every change up to here has been acted on
        self._errors: list[str] = []
        self._pending_deletes = 0  # failed deletes waiting for their retry
        self._objects = 0
        self._prune_error: str | None = None
        self._loop_error: str | None = None
        self._prunes = 0  # completed prune attempts (tests wait on it)
        self._last_round = float("-inf")  # clock.monotonic() at the start of the last round

    # -- running --------------------------------------------------------------------------------

    def run(self, stopping: threading.Event) -> None:
        """The loop: register the change feed, reconcile round after round until ``stopping`` is
        set (then call ``wake()`` so a waiting round notices), release the feed. An operation in
        progress is let finish (operations are not interruptible). Runs once at a time."""
        with self._progress:
            if self._running:
                raise RuntimeError(f"{self.name} is already running")
            self._running = True
        self._stopping = stopping
        self._live.clear()  # the new feed delivers every current row again
        try:
            self._consumer = self.db.register_consumer(self.name, self.table)
            self._loop()
        finally:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            with self._progress:
                self._running = False
                self._progress.notify_all()

    def wake(self) -> None:
        """Make the loop re-check its deadlines and its stop event now (a FakeClock calls this
        from advance(); whoever stops the loop calls it after setting the event)."""
        self._wake.set()
        self.db.notify_waiters()
        with self._progress:  # a wait_for_prunes(until=...) re-checks its stop condition
            self._progress.notify_all()

    def trigger_prune(self) -> None:
        """Prune at the next round (or as soon as the table is initialized)."""
        self._prune_requested.set()
        self.wake()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._round()
                self._wait()
            except Exception as e:
                # A bug or a database failure mid-round must neither kill the loop silently nor
                # spin: log it, report it in health(), pause, and redo what the round had taken.
                log.exception("%s: unexpected error in the reconcile loop", self.name)
                with self._progress:
                    self._loop_error = f"{type(e).__name__}: {_message(e)}"
                    self._progress.notify_all()
                self._stopping.wait(self.config.error_backoff)
                self._resync()

    def _resync(self) -> None:
        """After an unexpected error mid-round: whatever that round had taken is redone.

        A fresh feed re-delivers every current row (Pending ones are updated again; updates are
        idempotent), retries popped by the failed round are queued again, and a prune catches
        deletes whose tombstones were consumed but not acted on.
        """
        try:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            self._live.clear()
            self._retries.requeue_popped(self._clock.monotonic())
            self._prune_requested.set()
            self._consumer = self.db.register_consumer(self.name, self.table)
        except Exception:
            log.exception("%s: resync failed; retrying", self.name)

    def _wait(self) -> None:
        """Block until the table changes, the next retry or prune is due, or someone wakes us."""
        consumer = self._consumer
        assert consumer is not None
        deadlines = [d for d in (self._retries.next_due(), self._next_prune) if d is not None]
        if self._initialized and self._prune_requested.is_set():
            deadlines.append(0.0)
        timeout = None
        if deadlines:
            delta = min(deadlines) - self._clock.monotonic()
            if delta <= 0:
                return
            timeout = self._clock.real_timeout(delta)

        def interrupted() -> bool:
            # Runs under the database lock at each notification: cheap checks only. The stop
            # event is checked too: a wake() that came before this round cleared ``_wake``
            # must still end the wait.
            return (
                self._wake.is_set()
                or self._stopping.is_set()
                or (not self._initialized and self.db.initialized(self.table))
            )

        consumer.wait(timeout, until=interrupted)

    def _round(self) -> None:
        self._wake.clear()  # a wake() from here on triggers another round
        if self._consumer is None:
            self._consumer = self.db.register_consumer(self.name, self.table)
        consumer = self._consumer
        now = self._clock.monotonic()
        if not self._initialized and self.db.initialized(self.table):
            self._initialized = True
            self._next_prune = now  # prune once right away, then every prune_interval

        size = self.config.round_size
        changes = consumer.changes(limit=size)
        seen = consumer.revision
        work: dict[Key, _Work[R]] = {}
        for change in changes:
            key = self.table.key_of(change.row)
            if change.deleted:
                self._live.discard(key)
                self._retries.clear(key)  # a pending update retry is moot
                work[key] = _Work(key, change.row, change.revision, delete=True)
                continue
            self._live.add(key)
            kind = self._status(change.row).kind
            if kind is StatusKind.PENDING:
                self._retries.clear(key)  # the row changed: its backoff starts over
                work[key] = _Work(key, change.row, change.revision, delete=False)
            else:
                # Not ours to act on: mostly our own status writes coming back. A re-created key
                # cancels a delete retry; a row that is no longer in Error needs no retry.
                item = self._retries.get(key)
                if item is not None and (item.delete or kind is not StatusKind.ERROR):
                    self._retries.clear(key)
        self._add_due_retries(work, now, size - len(work))

        results = self._execute(list(work.values()))
        self._commit(results)

        if self._initialized and (
            self._prune_requested.is_set()
            or (self._next_prune is not None and now >= self._next_prune)
        ):
            self._prune()
        self._publish(seen, now)

    def _status(self, row: R) -> Status:
        status: Status = getattr(row, self._status_field)
        return status

    def _add_due_retries(self, work: dict[Key, _Work[R]], now: float, budget: int) -> None:
        due = self._retries.pop_due(now, max(0, budget))
        if not due:
            return
        # Retry against the row as it is now: the Error status we wrote gave it a new revision,
        # and if it has changed since, the feed brings it (or its tombstone) instead.
        with self.db.read_txn() as txn:
            current = {item.key: txn.get_with_revision(self.table, *item.key) for item in due}
        for item in due:
            found = current[item.key]
            if item.delete:
                if found is None:
                    work[item.key] = _Work(item.key, item.value, 0, delete=True)
                else:
                    self._retries.clear(item.key)  # re-created meanwhile
            elif found is not None and self._status(found[0]).kind is StatusKind.ERROR:
                work[item.key] = _Work(item.key, found[0], found[1], delete=False)
            else:
                self._retries.clear(item.key)

    def _execute(self, work: list[_Work[R]]) -> list[tuple[_Work[R], str | None]]:
        """Run the operations, outside any lock; an exception is the row's failure."""
        results: list[tuple[_Work[R], str | None]] = []
        self._permanent: set[Key] = set()
        for w in work:
            if self._stopping.is_set():
                break  # the rest stays Pending; a new reconciler starts from the table
            try:
                if w.delete:
                    self.ops.delete(w.row)
                else:
                    self.ops.update(w.row)
                results.append((w, None))
            except Exception as e:
                op = "delete" if w.delete else "update"
                log.info("%s: %s of %s failed: %s", self.name, op, _key_text(w.key), _message(e))
                results.append((w, _message(e)))
                if isinstance(e, PermanentError):
                    self._permanent.add(w.key)
        return results

    def _commit(self, results: list[tuple[_Work[R], str | None]]) -> None:
        """Write every update's outcome in one transaction, each only if its row is unchanged;
        then update the retry queue (only after the commit, so a failed commit changes
        nothing)."""
        retry_updates: list[tuple[_Work[R], str]] = []
        updates = [(w, err) for w, err in results if not w.delete]
        if updates:
            stamp = self._clock.now()
            with self.db.write_txn(self.table) as txn:
                for w, err in updates:
                    status = (
                        Status(StatusKind.DONE, "", stamp)
                        if err is None
                        else Status(StatusKind.ERROR, err, stamp)
                    )
                    row: Any = w.row
                    new = dataclasses.replace(row, **{self._status_field: status})
                    if txn.compare_and_swap(self.table, new, w.revision) and err is not None:
                        retry_updates.append((w, err))
        now = self._clock.monotonic()
        for w, err in results:
            if err is None or w.key in self._permanent:
                self._retries.clear(w.key)
            elif w.delete:
                self._retries.add(w.key, w.row, delete=True, error=err, now=now)
        for w, err in retry_updates:
            if w.key not in self._permanent:
                self._retries.add(w.key, w.row, delete=False, error=err, now=now)

    def _prune(self) -> None:
        self._prune_requested.clear()
        with self.db.read_txn() as txn:
            rows = txn.all(self.table)
        error: str | None = None
        try:
            self.ops.prune(rows)
        except Exception as e:
            error = _message(e)
            log.warning(
                "%s: prune failed (next in %s s): %s", self.name, self.config.prune_interval, error
            )
        self._next_prune = self._clock.monotonic() + self.config.prune_interval
        with self._progress:
            self._prune_error = error
            self._prunes += 1
            self._progress.notify_all()

    def _publish(self, seen: int, started: float) -> None:
        errors: list[str] = []
        pending_deletes = 0
        for item in sorted(self._retries.items(), key=lambda i: repr(i.key)):
            errors.append(self._error_text(item))
            pending_deletes += item.delete
        with self._progress:
            self._done_revision = seen
            self._errors = errors
            self._pending_deletes = pending_deletes
            self._objects = len(self._live)
            self._loop_error = None
            self._last_round = started
            self._progress.notify_all()

    @staticmethod
    def _error_text(item: RetryItem[Key, Any]) -> str:
        what = f"delete {_key_text(item.key)}" if item.delete else _key_text(item.key)
        return f"{what}: {item.error}"

    # -- observation ----------------------------------------------------------------------------

    def health(self) -> ReconcilerHealth:
        """The errors in force and the number of rows reconciled (see ``ReconcilerHealth``)."""
        with self._lock:
            errors = list(self._errors)
            if self._prune_error is not None:
                errors.append(f"prune: {self._prune_error}")
            if self._loop_error is not None:
                errors.append(f"reconciler: {self._loop_error}")
            return ReconcilerHealth(tuple(errors), self._objects)

    @property
    def degraded(self) -> bool:
        return not self.health().ok

    @property
    def prunes(self) -> int:
        """How many prunes have run (successful or not)."""
        with self._lock:
            return self._prunes

    def wait_until_reconciled(self, timeout: float, *, allow_errors: bool = False) -> bool:
        """For tests: True once every row, at its current revision, is Done and no delete is
        waiting for a retry; with ``allow_errors``, rows in Error and failed deletes count as
        settled too. Real seconds; woken at the end of each round, not by polling."""
        with self._progress:
            return self._progress.wait_for(lambda: self._settled(allow_errors), timeout)

    def wait_for_prunes(
        self, count: int, timeout: float | None, *, until: Callable[[], bool] | None = None
    ) -> bool:
        """Wait (real seconds) until ``count`` prunes have run, successful or not; True if they
        have. ``until`` ends the wait early: it is checked at the end of every round and on
        ``wake()``, so a waiter that is being stopped is not held up."""
        with self._progress:
            self._progress.wait_for(
                lambda: self._prunes >= count or (until is not None and until()), timeout
            )
            return self._prunes >= count

    def wait_for_round(self, since: float, timeout: float) -> bool:
        """For tests with a FakeClock: wait (real seconds) until a round that began at
        ``clock.monotonic() >= since`` has finished, i.e. one that saw the clock's new time."""
        with self._progress:
            return self._progress.wait_for(lambda: self._last_round >= since, timeout)

    def _settled(self, allow_errors: bool) -> bool:
        # Called with _lock held; takes the database lock inside it (the loop never does the
        # reverse, so the order is safe).
        if self._pending_deletes and not allow_errors:
            return False
        accepted = {StatusKind.DONE, StatusKind.ERROR} if allow_errors else {StatusKind.DONE}
        with self.db.read_txn() as txn:
            if self._done_revision < txn.revision(self.table):
                return False
            return all(self._status(row).kind in accepted for row in txn.all(self.table))
