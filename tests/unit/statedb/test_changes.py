"""Change feeds: current rows first, then upserts and deletes in revision order; tombstones."""

from __future__ import annotations

import threading
import time

from statedb import Database
from tests.unit.statedb.conftest import ITEMS, Item


def _fill(db: Database, *keys: str) -> None:
    with db.write_txn(ITEMS) as txn:
        for k in keys:
            txn.upsert(ITEMS, Item(k))


def test_first_batch_is_every_current_row_then_changes_in_order(db: Database) -> None:
    _fill(db, "a", "b")
    c = db.register_consumer("c", ITEMS)
    first = c.changes()
    assert [(ch.row.key, ch.deleted) for ch in first] == [("a", False), ("b", False)]
    with db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("a", 5))
        txn.delete(ITEMS, Item("b"))
        txn.upsert(ITEMS, Item("c"))
    got = c.changes()
    assert [(ch.row.key, ch.deleted) for ch in got] == [("a", False), ("b", True), ("c", False)]
    assert [ch.revision for ch in got] == sorted(ch.revision for ch in got)
    assert c.changes() == []


def test_slow_consumer_still_sees_every_delete(db: Database) -> None:
    fast = db.register_consumer("fast", ITEMS)
    slow = db.register_consumer("slow", ITEMS)
    keys = [f"k{i}" for i in range(50)]
    _fill(db, *keys)
    assert len(fast.changes()) == 50
    assert len(slow.changes()) == 50
    for k in keys:
        with db.write_txn(ITEMS) as txn:
            txn.delete(ITEMS, Item(k))
        fast.changes()  # the fast one keeps up after every commit
    deleted = [ch.row.key for ch in slow.changes() if ch.deleted]
    assert deleted == keys


def test_created_then_deleted_before_seen_shows_only_the_delete(db: Database) -> None:
    c = db.register_consumer("c", ITEMS)
    assert c.changes() == []
    _fill(db, "x")
    with db.write_txn(ITEMS) as txn:
        txn.delete(ITEMS, Item("x"))
    assert [(ch.row.key, ch.deleted) for ch in c.changes()] == [("x", True)]


def test_tombstones_are_collected_once_every_consumer_passed_them(db: Database) -> None:
    a = db.register_consumer("a", ITEMS)
    b = db.register_consumer("b", ITEMS)
    _fill(db, "x", "y")
    a.changes()
    b.changes()
    with db.write_txn(ITEMS) as txn:
        txn.delete(ITEMS, Item("x"))
        txn.delete(ITEMS, Item("y"))
    assert db.tombstones(ITEMS) == 2
    a.changes()
    assert db.tombstones(ITEMS) == 2, "b has not passed them yet"
    b.changes(limit=1)
    assert db.tombstones(ITEMS) == 1
    b.changes()
    assert db.tombstones(ITEMS) == 0


def test_a_closed_consumer_stops_holding_tombstones(db: Database) -> None:
    a = db.register_consumer("a", ITEMS)
    b = db.register_consumer("b", ITEMS)
    _fill(db, "x")
    with db.write_txn(ITEMS) as txn:
        txn.delete(ITEMS, Item("x"))
    a.changes()
    assert db.tombstones(ITEMS) == 1
    b.close()
    assert db.tombstones(ITEMS) == 0


def test_no_consumers_means_no_tombstones(db: Database) -> None:
    _fill(db, "x")
    with db.write_txn(ITEMS) as txn:
        txn.delete(ITEMS, Item("x"))
    assert db.tombstones(ITEMS) == 0


def test_recreated_key_supersedes_its_tombstone(db: Database) -> None:
    c = db.register_consumer("c", ITEMS)
    _fill(db, "x")
    c.changes()
    with db.write_txn(ITEMS) as txn:
        txn.delete(ITEMS, Item("x"))
    with db.write_txn(ITEMS) as txn:
        txn.upsert(ITEMS, Item("x", 7))
    assert db.tombstones(ITEMS) == 0
    assert [(ch.row, ch.deleted) for ch in c.changes()] == [(Item("x", 7), False)]


def test_late_consumer_does_not_see_earlier_deletes(db: Database) -> None:
    early = db.register_consumer("early", ITEMS)
    _fill(db, "x", "y")
    with db.write_txn(ITEMS) as txn:
        txn.delete(ITEMS, Item("x"))
    late = db.register_consumer("late", ITEMS)
    assert [(ch.row.key, ch.deleted) for ch in late.changes()] == [("y", False)]
    assert [ch.deleted for ch in early.changes()] == [False, True]


def test_wait_is_woken_by_the_commit(db: Database) -> None:
    c = db.register_consumer("c", ITEMS)
    c.changes()
    woke: list[float] = []

    def waiter() -> None:
        if c.wait(timeout=10):
            woke.append(time.monotonic())

    t = threading.Thread(target=waiter)
    t.start()
    _fill(db, "x")
    t.join(timeout=10)
    assert woke, "the waiter was not woken by the commit"
    assert [ch.row.key for ch in c.changes()] == ["x"]


def test_wait_times_out_without_a_change(db: Database) -> None:
    rev = db.revision(ITEMS)
    assert db.wait_for_change(ITEMS, rev, timeout=0.02) == rev


def test_a_rolled_back_transaction_wakes_nobody_and_changes_nothing(db: Database) -> None:
    c = db.register_consumer("c", ITEMS)
    c.changes()
    txn = db.write_txn(ITEMS)
    txn.upsert(ITEMS, Item("x"))
    txn.abort()
    assert c.wait(timeout=0.02) is False
    assert c.changes() == []


def test_wait_for_any_wakes_on_any_of_the_tables(db: Database) -> None:
    from tests.unit.statedb.conftest import OTHERS, Other

    revs = {ITEMS: db.revision(ITEMS), OTHERS: db.revision(OTHERS)}
    assert db.wait_for_any(revs, timeout=0.01) is False
    flag = [False]
    assert db.wait_for_any(revs, timeout=0.01, until=lambda: not flag[0]) is True
    t = threading.Thread(target=lambda: _other(db, OTHERS, Other))
    t.start()
    assert db.wait_for_any(revs, timeout=10) is True
    t.join()


def _other(db: Database, table: object, row: type) -> None:
    time.sleep(0.01)
    with db.write_txn(table) as txn:  # type: ignore[arg-type]
        txn.upsert(table, row(1))  # type: ignore[arg-type]
