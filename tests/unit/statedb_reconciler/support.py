"""A tiny test table and a fake target with scripted failures, shared by the reconciler tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from agent.runtime.clock import FakeClock
from statedb import Database, Status, Table
from statedb.reconciler import Config
from tests.reconciler_job import JobReconciler

WAIT = 5.0  # real seconds any condition may take before a test gives up (never reached when green)


@dataclass(frozen=True, slots=True)
class Obj:
    key: str
    value: str = ""
    status: Status = field(default_factory=Status.pending)


OBJECTS: Table[Obj] = Table(
    name="test-objects",
    sql_name="test_objects",
    row_type=Obj,
    primary_key=("key",),
    header=("Key", "Value", "Status"),
    format_row=lambda o: (o.key, o.value, str(o.status)),
    to_json=lambda o: {"key": o.key, "value": o.value},
)


class TargetError(Exception):
    pass


class FakeTarget:
    """A key/value store standing in for a BPF map. Records every operation; failures and
    blocking are scripted per (operation, key)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.cond = threading.Condition()
        self.state: dict[str, str] = {}
        self.log: list[str] = []  # "update(a=v1)", "update(a=v1) fail: boom", "prune -> [x]"
        self.attempts: list[tuple[str, str, float]] = []  # (op, key, clock time)
        self.fail_next: dict[tuple[str, str], list[str]] = {}  # messages, one per attempt
        self.fail_always: dict[tuple[str, str], str] = {}
        self.blocks: dict[tuple[str, str], threading.Event] = {}
        self.entered: set[tuple[str, str]] = set()
        self.prunes: list[list[str]] = []  # keys each prune was given

    # -- scripting ------------------------------------------------------------------------------

    def fail(self, op: str, key: str, message: str, times: int = 1) -> None:
        with self.cond:
            self.fail_next.setdefault((op, key), []).extend([message] * times)

    def block(self, op: str, key: str) -> threading.Event:
        """The next ``op`` of ``key`` blocks until the returned event is set."""
        release = threading.Event()
        with self.cond:
            self.blocks[(op, key)] = release
        return release

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def count(self, op: str, key: str) -> int:
        return sum(1 for o, k, _t in self.attempts if (o, k) == (op, key))

    def times(self, op: str, key: str) -> list[float]:
        return [t for o, k, t in self.attempts if (o, k) == (op, key)]

    # -- Operations -----------------------------------------------------------------------------

    def _begin(self, op: str, key: str) -> str | None:
        with self.cond:
            self.attempts.append((op, key, self.clock()))
            release = self.blocks.pop((op, key), None)
            if release is not None:
                self.entered.add((op, key))
                self.cond.notify_all()
        if release is not None:
            release.wait(WAIT)
        with self.cond:
            queued = self.fail_next.get((op, key))
            if queued:
                return queued.pop(0)
            return self.fail_always.get((op, key))

    def _end(self, entry: str, error: str | None) -> None:
        with self.cond:
            self.log.append(entry if error is None else f"{entry} fail: {error}")
            self.cond.notify_all()
        if error is not None:
            raise TargetError(error)

    def update(self, row: Obj) -> None:
        error = self._begin("update", row.key)
        if error is None:
            with self.cond:
                self.state[row.key] = row.value
        self._end(f"update({row.key}={row.value})", error)

    def delete(self, row: Obj) -> None:
        error = self._begin("delete", row.key)
        if error is None:
            with self.cond:
                self.state.pop(row.key, None)
        self._end(f"delete({row.key})", error)

    def prune(self, rows: Iterable[Obj]) -> None:
        keys = sorted(r.key for r in rows)
        error = self._begin("prune", "")
        with self.cond:
            self.prunes.append(keys)
            extras = sorted(set(self.state) - set(keys))
            if error is None:
                for k in extras:
                    del self.state[k]
        self._end(f"prune -> removed [{', '.join(extras)}]" if error is None else "prune", error)


def upsert(db: Database, *rows: Obj) -> None:
    with db.write_txn(OBJECTS) as txn:
        for row in rows:
            txn.upsert(OBJECTS, row)


def delete(db: Database, *keys: str) -> None:
    with db.write_txn(OBJECTS) as txn:
        for key in keys:
            txn.delete_key(OBJECTS, key)


def rows(db: Database) -> dict[str, Obj]:
    with db.read_txn() as txn:
        return {o.key: o for o in txn.all(OBJECTS)}


@dataclass
class Rig:
    db: Database
    clock: FakeClock
    target: FakeTarget
    rec: JobReconciler[Obj]

    def advance(self, seconds: float) -> None:
        """Move fake time and wait for a round that saw it (no sleeping)."""
        self.clock.advance(seconds)
        assert self.rec.wait_for_round(self.clock.monotonic(), WAIT)


@contextmanager
def rig(initialized: bool = True, **config: Any) -> Iterator[Rig]:
    """A started reconciler over a fresh in-memory table, driven by a FakeClock.

    The table has one initializer, "sync"; with ``initialized=False`` the test completes it
    (``mark_initialized``).
    """
    clock = FakeClock()
    db = Database.open(None, [OBJECTS])
    with db.write_txn(OBJECTS) as txn:
        txn.register_initializer(OBJECTS, "sync")
        if initialized:
            txn.initializer_done(OBJECTS, "sync")
    target = FakeTarget(clock.monotonic)
    config.setdefault("retry_min", 1 / 64)
    config.setdefault("error_backoff", 0.005)
    rec = JobReconciler(db, OBJECTS, target, Config(**config), clock=clock)
    clock.on_advance(rec.wake)
    rec.start()
    try:
        yield Rig(db, clock, target, rec)
    finally:
        rec.stop(timeout=WAIT)
        db.close()


def mark_initialized(db: Database) -> None:
    with db.write_txn(OBJECTS) as txn:
        txn.initializer_done(OBJECTS, "sync")
