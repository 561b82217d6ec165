"""The reconciler against a fake target: status on the row, retries with backoff, the
compare-and-swap on the reconciled revision, deletes, prune after initialization, health, stop.

Time is a FakeClock: a retry or prune happens only when the test advances it, and tests wait for
conditions (target calls, a round that saw the new time), never for wall-clock sleeps.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from itertools import pairwise

import pytest

from agent.runtime.clock import RealClock
from statedb import Database, Status, StatusKind, Table
from statedb.reconciler import Config
from tests.reconciler_job import JobReconciler
from tests.unit.statedb_reconciler.support import (
    OBJECTS,
    WAIT,
    FakeTarget,
    Obj,
    delete,
    mark_initialized,
    rig,
    rows,
    upsert,
)

MIN = 1 / 64  # retry_min of the rig; binary fractions keep fake-clock sums exact


def test_pending_rows_reach_the_target_and_are_marked_done() -> None:
    with rig() as r:
        upsert(r.db, Obj("a", "1"), Obj("b", "2"), Obj("c", "3"))
        assert r.rec.wait_until_reconciled(WAIT)
        assert r.target.state == {"a": "1", "b": "2", "c": "3"}
        now = r.clock.now()
        assert {k: o.status for k, o in rows(r.db).items()} == {
            k: Status(StatusKind.DONE, "", now) for k in "abc"
        }
        assert str(r.rec.health()) == "OK, 3 object(s)"


def test_rows_not_pending_are_left_alone() -> None:
    """Only Pending rows are acted on: a writer may store a row as already Done."""
    with rig() as r:
        upsert(r.db, Obj("a", "1", Status(StatusKind.DONE)), Obj("b", "2"))
        assert r.rec.wait_until_reconciled(WAIT)
        assert r.target.state == {"b": "2"}
        assert [op for op, _k, _t in r.target.attempts if op == "update"] == ["update"]


def test_failed_update_sets_error_status_with_message_and_degrades_health() -> None:
    with rig() as r:
        r.target.fail_always[("update", "a")] = "map full"
        upsert(r.db, Obj("a", "1"), Obj("b", "2"))
        assert r.rec.wait_until_reconciled(WAIT, allow_errors=True)
        assert not r.rec.wait_until_reconciled(0)  # an Error row is not reconciled
        a = rows(r.db)["a"]
        assert (a.status.kind, a.status.error) == (StatusKind.ERROR, "map full")
        assert rows(r.db)["b"].status.kind is StatusKind.DONE
        assert str(r.rec.health()) == "Degraded: a: map full"
        assert r.rec.degraded


def test_retries_back_off_exponentially_up_to_the_cap_then_recover() -> None:
    # retry_max 3/64 s: delays 1/64, 2/64, then capped at 3/64 (instead of 4/64).
    with rig(retry_max=3 * MIN) as r:
        r.target.fail_always[("update", "a")] = "busy"
        upsert(r.db, Obj("a", "1"))
        # Settled in Error: the first failure is committed and its retry scheduled.
        assert r.rec.wait_until_reconciled(WAIT, allow_errors=True)
        # Step fake time in half-minimum steps: each attempt shows when it was first due.
        for _ in range(24):
            r.advance(MIN / 2)
        times = r.target.times("update", "a")
        gaps = [b - a for a, b in pairwise(times)]
        assert gaps[:5] == [MIN, 2 * MIN, 3 * MIN, 3 * MIN, 3 * MIN]
        assert rows(r.db)["a"].status.kind is StatusKind.ERROR

        # The target heals: the next retry succeeds.
        del r.target.fail_always[("update", "a")]
        r.advance(3 * MIN)
        assert r.rec.wait_until_reconciled(WAIT)
        assert r.target.state == {"a": "1"}
        assert rows(r.db)["a"].status == Status(StatusKind.DONE, "", r.clock.now())
        assert str(r.rec.health()) == "OK, 1 object(s)"


def test_a_change_to_the_row_resets_its_backoff() -> None:
    with rig(retry_max=1.0) as r:
        r.target.fail_always[("update", "a")] = "busy"
        upsert(r.db, Obj("a", "1"))
        assert r.rec.wait_until_reconciled(WAIT, allow_errors=True)
        for _ in range(6):  # failures at 0, 1, 3 (x MIN): the next delay would be 4 x MIN
            r.advance(MIN / 2)
        assert r.target.count("update", "a") == 3
        upsert(r.db, Obj("a", "2"))  # changed: tried at once, then again after MIN, not 8 x MIN
        assert r.target.wait_for(lambda: r.target.count("update", "a") == 4)
        assert r.rec.wait_until_reconciled(WAIT, allow_errors=True)
        r.advance(MIN)
        assert r.target.count("update", "a") == 5
        assert r.target.log[-1] == "update(a=2) fail: busy"


def test_row_changed_during_a_blocking_update_is_not_marked_done_with_stale_status() -> None:
    with rig() as r:
        statuses: list[tuple[str, StatusKind]] = []
        watcher = r.db.register_consumer("test-watcher", OBJECTS)
        release = r.target.block("update", "a")
        upsert(r.db, Obj("a", "v1"))
        assert r.target.wait_for(lambda: ("update", "a") in r.target.entered)
        # The update of v1 is in progress (outside the db lock): the writer changes the row.
        upsert(r.db, Obj("a", "v2"))
        release.set()
        assert r.rec.wait_until_reconciled(WAIT)
        statuses += [(c.row.value, c.row.status.kind) for c in watcher.changes()]
        assert [e for e in r.target.log if e.startswith("update")] == [
            "update(a=v1)",
            "update(a=v2)",
        ]
        # v1's Done never landed on the row; v2 was reconciled at its own revision.
        assert ("v1", StatusKind.DONE) not in statuses
        assert statuses[-1] == ("v2", StatusKind.DONE)
        assert rows(r.db)["a"].value == "v2"
        assert r.target.state == {"a": "v2"}


def test_row_changed_during_a_failing_update_gets_no_stale_error() -> None:
    with rig() as r:
        release = r.target.block("update", "a")
        r.target.fail("update", "a", "stale failure")
        upsert(r.db, Obj("a", "v1"))
        assert r.target.wait_for(lambda: ("update", "a") in r.target.entered)
        upsert(r.db, Obj("a", "v2"))
        release.set()
        assert r.rec.wait_until_reconciled(WAIT)
        assert rows(r.db)["a"].status.kind is StatusKind.DONE
        assert str(r.rec.health()) == "OK, 1 object(s)"


def test_deletes_reach_the_target_and_failed_deletes_are_retried() -> None:
    with rig() as r:
        upsert(r.db, Obj("a", "1"), Obj("b", "2"))
        assert r.rec.wait_until_reconciled(WAIT)
        r.target.fail("delete", "a", "device busy")
        delete(r.db, "a", "b")
        assert r.target.wait_for(lambda: r.target.count("delete", "a") == 1)
        assert r.rec.wait_until_reconciled(WAIT, allow_errors=True)
        assert not r.rec.wait_until_reconciled(0)  # a delete is waiting for its retry
        assert r.target.state == {"a": "1"}
        assert str(r.rec.health()) == "Degraded: delete a: device busy"
        r.advance(MIN)
        assert r.rec.wait_until_reconciled(WAIT)
        assert r.target.state == {}
        assert r.target.count("delete", "a") == 2
        assert str(r.rec.health()) == "OK, 0 object(s)"


def test_recreating_a_key_cancels_its_delete_retry() -> None:
    with rig() as r:
        upsert(r.db, Obj("a", "1"))
        assert r.rec.wait_until_reconciled(WAIT)
        r.target.fail_always[("delete", "a")] = "device busy"
        delete(r.db, "a")
        assert r.target.wait_for(lambda: r.target.count("delete", "a") == 1)
        upsert(r.db, Obj("a", "2"))
        assert r.rec.wait_until_reconciled(WAIT)
        for _ in range(4):
            r.advance(MIN)
        assert r.target.count("delete", "a") == 1
        assert r.target.state == {"a": "2"}
        assert str(r.rec.health()) == "OK, 1 object(s)"


def test_prune_waits_for_initialization_then_removes_only_extras_then_runs_periodically() -> None:
    with rig(initialized=False, prune_interval=10.0) as r:
        r.target.state.update({"stale": "x", "a": "old"})
        upsert(r.db, Obj("a", "1"))
        r.rec.trigger_prune()  # a request before initialization waits for it
        assert r.rec.wait_until_reconciled(WAIT)
        r.advance(100.0)  # far past any prune deadline: still not initialized
        assert r.target.prunes == []
        assert r.rec.prunes == 0
        assert r.target.state == {"stale": "x", "a": "1"}

        mark_initialized(r.db)  # wakes the loop (no table change): prunes right away
        assert r.target.wait_for(lambda: len(r.target.prunes) == 1)
        assert r.target.prunes == [["a"]]
        assert r.target.state == {"a": "1"}

        r.target.state["stale2"] = "y"
        r.advance(9.0)
        assert len(r.target.prunes) == 1
        r.advance(1.0)
        assert r.target.prunes == [["a"], ["a"]]
        assert r.target.state == {"a": "1"}
        r.advance(10.0)
        assert len(r.target.prunes) == 3


def test_failed_prune_degrades_health_and_is_retried_at_the_next_interval() -> None:
    with rig(initialized=False, prune_interval=10.0) as r:
        r.target.fail("prune", "", "netlink timeout")
        r.target.state["stale"] = "x"
        mark_initialized(r.db)
        assert r.rec.wait_for_prunes(1, WAIT)
        assert str(r.rec.health()) == "Degraded: prune: netlink timeout"
        r.advance(MIN)  # retries of rows do not retry a prune
        assert len(r.target.prunes) == 1
        r.advance(10.0)
        assert len(r.target.prunes) == 2
        assert r.target.state == {}
        assert str(r.rec.health()) == "OK, 0 object(s)"


def test_trigger_prune_runs_a_prune_now() -> None:
    with rig(prune_interval=3600.0) as r:
        assert r.target.wait_for(lambda: len(r.target.prunes) == 1)  # the initial one
        r.target.state["stale"] = "x"
        r.rec.trigger_prune()
        assert r.target.wait_for(lambda: len(r.target.prunes) == 2)
        assert r.target.wait_for(lambda: "stale" not in r.target.state)


def test_health_lists_at_most_ten_errors() -> None:
    with rig() as r:
        keys = [f"k{i:02}" for i in range(12)]
        for k in keys:
            r.target.fail_always[("update", k)] = "no"
        upsert(r.db, *(Obj(k) for k in keys))
        assert r.rec.wait_until_reconciled(WAIT, allow_errors=True)
        shown = "; ".join(f"{k}: no" for k in keys[:10])
        assert str(r.rec.health()) == f"Degraded: {shown}; and 2 more"


def test_unexpected_error_in_the_loop_is_logged_degrades_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with rig() as r:
        original = r.rec._commit
        broke = threading.Event()
        proceed = threading.Event()

        def commit_once_broken(results: list[object]) -> None:
            if results and not broke.is_set():
                broke.set()
                raise RuntimeError("injected")
            if broke.is_set():
                proceed.wait(WAIT)  # hold recovery until the test has seen the degraded health
            original(results)  # type: ignore[arg-type]

        r.rec._commit = commit_once_broken  # type: ignore[method-assign,assignment]
        with caplog.at_level(logging.ERROR, logger="statedb.reconciler.reconciler"):
            upsert(r.db, Obj("a", "1"))
            assert broke.wait(WAIT)
            assert r.target.wait_for(lambda: r.target.count("update", "a") == 2)
            assert str(r.rec.health()) == "Degraded: reconciler: RuntimeError: injected"
            proceed.set()
            assert r.rec.wait_until_reconciled(WAIT)
        assert "unexpected error in the reconcile loop" in caplog.text
        assert rows(r.db)["a"].status.kind is StatusKind.DONE
        assert str(r.rec.health()) == "OK, 1 object(s)"


def test_stop_joins_the_thread_and_releases_the_change_feed() -> None:
    before = set(threading.enumerate())
    with rig() as r:
        upsert(r.db, Obj("a", "1"))
        assert r.rec.wait_until_reconciled(WAIT)
        (thread,) = set(threading.enumerate()) - before
        assert thread.name == "reconciler:test-objects"
        r.rec.stop(timeout=WAIT)  # waiting with no deadline at all: woken, not timed out
        assert not thread.is_alive()
        r.rec.stop()  # idempotent
        delete(r.db, "a")
        assert r.db.tombstones(OBJECTS) == 0  # the closed feed holds no tombstones
        r.db.register_consumer("reconciler:test-objects", OBJECTS).close()  # name is free
    assert set(threading.enumerate()) == before


def test_stop_lets_a_blocked_operation_finish_and_raises_if_it_does_not() -> None:
    with rig() as r:
        release = r.target.block("update", "a")
        upsert(r.db, Obj("a", "1"))
        assert r.target.wait_for(lambda: ("update", "a") in r.target.entered)
        with pytest.raises(TimeoutError, match="did not stop"):
            r.rec.stop(timeout=0.01)
        release.set()
        r.rec.stop(timeout=WAIT)


def test_start_twice_is_an_error() -> None:
    with rig() as r, pytest.raises(RuntimeError, match="already started"):
        r.rec.start()


def test_a_table_without_a_status_field_is_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class Plain:
        key: str

    plain: Table[Plain] = Table(
        name="plain",
        sql_name="plain",
        row_type=Plain,
        primary_key=("key",),
        header=("Key",),
        format_row=lambda p: (p.key,),
        to_json=lambda p: {},
    )
    with Database.open(None, [plain]) as db, pytest.raises(TypeError, match="no Status field"):
        JobReconciler(db, plain, FakeTarget(lambda: 0.0), clock=RealClock())  # type: ignore[misc]


def test_real_clock_and_defaults_reconcile_too() -> None:
    """No FakeClock: the production clock, short retry, a scripted failure healed by a retry."""
    db = Database.open(None, [OBJECTS])
    target = FakeTarget(lambda: 0.0)
    target.fail("update", "a", "transient")
    rec = JobReconciler(db, OBJECTS, target, Config(retry_min=0.005), clock=RealClock())
    rec.start()
    try:
        upsert(db, Obj("a", "1"))
        assert rec.wait_until_reconciled(WAIT)
        assert target.log == ["update(a=1) fail: transient", "update(a=1)"]
    finally:
        rec.stop(timeout=WAIT)
        db.close()


@pytest.mark.parametrize(("round_size", "rounds_with_results"), [(1000, 1), (10, 5)])
def test_round_size_bounds_each_round_and_statuses_commit_once_per_round(
    round_size: int, rounds_with_results: int
) -> None:
    with rig(round_size=round_size) as r:
        assert r.target.wait_for(lambda: len(r.target.prunes) == 1)
        assert r.rec.wait_until_reconciled(WAIT)
        commits: list[str] = []
        write_txn = r.db.write_txn

        def counting_write_txn(*tables: Table[object]) -> object:
            commits.append(threading.current_thread().name)
            return write_txn(*tables)

        r.db.write_txn = counting_write_txn  # type: ignore[method-assign,assignment]
        upsert(r.db, *(Obj(f"k{i:02}", "v") for i in range(50)))
        commits.clear()  # the test's own upsert
        assert r.rec.wait_until_reconciled(WAIT)
        assert commits == ["reconciler:test-objects"] * rounds_with_results
        assert len(r.target.state) == 50
