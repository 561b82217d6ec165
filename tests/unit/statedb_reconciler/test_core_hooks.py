"""The two small additions to the statedb core that the reconciler needs, pinned here."""

from __future__ import annotations

import threading

from statedb import Database
from tests.unit.statedb_reconciler.support import OBJECTS, Obj, delete, upsert


def test_consumer_with_a_limit_is_not_woken_forever_by_deletes_made_before_it_registered() -> None:
    # Broke: changes(limit=...) returning nothing did not advance the consumer, so the table's
    # revision (from the earlier delete) stayed ahead and wait() returned at once: a busy loop.
    with Database.open(None, [OBJECTS]) as db:
        upsert(db, Obj("a"))
        delete(db, "a")
        consumer = db.register_consumer("c", OBJECTS)
        assert consumer.changes(limit=10) == []
        assert consumer.wait(0) is False


def test_wait_until_predicate_ends_a_wait_when_notified() -> None:
    with Database.open(None, [OBJECTS]) as db:
        consumer = db.register_consumer("c", OBJECTS)
        consumer.changes()
        flag = threading.Event()
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(consumer.wait(None, flag.is_set)))
        waiter.start()
        flag.set()
        db.notify_waiters()
        waiter.join(5.0)
        assert not waiter.is_alive()
        assert result == [False]  # woken, not by a change


def test_wait_until_predicate_sees_initialization_markers() -> None:
    with Database.open(None, [OBJECTS]) as db:
        with db.write_txn(OBJECTS) as txn:
            txn.register_initializer(OBJECTS, "sync")
        consumer = db.register_consumer("c", OBJECTS)
        consumer.changes()
        waiter = threading.Thread(
            target=lambda: consumer.wait(None, lambda: db.initialized(OBJECTS))
        )
        waiter.start()
        with db.write_txn(OBJECTS) as txn:
            txn.initializer_done(OBJECTS, "sync")
        waiter.join(5.0)
        assert not waiter.is_alive()
