"""ChangesLoop: every batch of a table's changes handed to ``handle`` in order, the first one the
listing; a batch that raises marks the loop Degraded until a later batch succeeds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.changes_loop import ChangesLoop
from agent.runtime import Level
from common.tables.pods import PODS, Pod
from statedb import Change, Database


def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


class Recording(ChangesLoop[Pod]):
    def __init__(self, db: Database) -> None:
        super().__init__(db, PODS, "recording")
        self.batches: list[tuple[list[str], bool]] = []
        self.fail = threading.Event()

    def handle(self, changes: list[Change[Pod]], first: bool) -> None:
        if self.fail.is_set() and changes:
            raise ValueError("cannot handle this batch")
        self.batches.append(([c.row.name for c in changes], first))


def pod(name: str) -> Pod:
    return Pod("default", name, "node1", ("198.51.100.7",), uid=f"uid-{name}")


def write(db: Database, *pods: Pod) -> None:
    with db.write_txn(PODS) as txn:
        for p in pods:
            txn.upsert(PODS, p)


@pytest.fixture
def db() -> Iterator[Database]:
    d = Database.open(None, [PODS])
    yield d
    d.close()


def test_batches_in_order_and_health_from_starting_to_ok_to_stopped(db: Database) -> None:
    write(db, pod("a"))
    loop = Recording(db)
    assert loop.health.name == "recording"
    assert loop.health.current().level is Level.STARTING
    loop.start()
    try:
        until(lambda: loop.batches == [(["a"], True)])
        until(lambda: loop.health.current().level is Level.OK)
        write(db, pod("b"))
        until(lambda: loop.batches[-1] == (["b"], False))
    finally:
        loop.stop()
    assert loop.health.current().level is Level.STOPPED


def test_a_failing_batch_is_degraded_until_a_batch_succeeds(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    loop = Recording(db)
    loop.start()
    try:
        until(lambda: loop.health.current().level is Level.OK)
        loop.fail.set()
        write(db, pod("a"))
        until(lambda: loop.health.current().level is Level.DEGRADED)
        health = loop.health.current()
        assert health.message == "handling a batch of pods changes failed: cannot handle this batch"
        assert "recording: handling a batch of" in caplog.text
        loop.fail.clear()
        write(db, pod("b"))
        until(lambda: loop.health.current().level is Level.OK)
        assert loop.batches[-1] == (["b"], False), "the loop carried on with the next batch"
    finally:
        loop.stop()
