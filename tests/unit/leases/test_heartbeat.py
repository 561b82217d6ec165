"""Node heartbeats: the elector renews this node's heartbeat lease and releases it on stop,
apart from the Service leases it reports; the node-liveness monitor judges every node's
heartbeat on the local clock and writes ``l2-nodes``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from agent.leases.election import Timings
from agent.leases.elector import Elector
from agent.leases.heartbeat import (
    NodeLivenessMonitor,
    NodeLivenessView,
    placement_heartbeat_timings,
)
from agent.leases.record import LeaseRecord, row_from_record
from agent.runtime import FakeClock
from common.leases import heartbeat_name, heartbeat_node, is_agent_lease, lease_name
from common.tables.leases import LEASES
from common.tables.node_liveness import L2_NODES, Liveness
from statedb import Database
from tests.unit.leases.fake_api import FakeLeaseAPI

T = Timings(lease_duration=2.0, renew_deadline=0.8, retry_period=0.2)
HB = heartbeat_name("node1")
SVC = lease_name("default", "svc")


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_heartbeat_names() -> None:
    assert HB == "l2announcer-node-node1"
    assert heartbeat_node(HB) == "node1"
    assert heartbeat_node(SVC) is None
    assert heartbeat_node("l2announcer-node-") is None
    assert is_agent_lease(HB) and is_agent_lease(SVC) and not is_agent_lease("kube-scheduler")


def test_only_placement_reading_it_the_heartbeat_is_renewed_three_times_per_lease_duration() -> (
    None
):
    assert placement_heartbeat_timings(T) == Timings(2.0, 2 * 2.0 / 3, 2.0 / 3)
    assert placement_heartbeat_timings(Timings(15, 5, 2)) == Timings(15, 10, 5)
    slow = Timings(15, 10, 6)  # already at most three renewals per duration: kept
    assert placement_heartbeat_timings(slow) == slow


@pytest.mark.parametrize("economy", [True, False], ids=["economy", "per-service"])
def test_the_elector_renews_its_heartbeat_and_releases_it_on_stop(economy: bool) -> None:
    """Every retry period in economy mode (it vouches for the node's leases), three times per
    lease duration when only placement reads it."""
    api = FakeLeaseAPI()
    events: list[tuple[str, bool]] = []
    beats: list[bool] = []
    e = Elector(
        api.client("node1"),
        "node1",
        T,
        lambda n, leading, _r: events.append((n, leading)),
        heartbeat=HB,
        on_heartbeat=lambda alive, _r: beats.append(alive),
        economy=economy,
    )
    api.observers.append(e.observe)
    e.start()
    try:
        _wait(e.heartbeat_alive)
        assert api.leases[HB].holder == "node1"
        first = int(api.leases[HB].resource_version)
        time.sleep(2 * T.lease_duration)  # 20 retry periods, 6 thirds of the lease duration
        renewals = int(api.leases[HB].resource_version) - first
        if economy:
            assert renewals >= 8  # more than the other mode can make
        else:
            assert 3 <= renewals <= 7
        # Not a Service lease: not led, not a campaign, no leadership callback.
        assert e.leading() == set() and e.campaigns() == {}
        assert events == [] and beats == [True]
        assert e.health.current().message == "leading 0 of 0 lease(s)"
    finally:
        e.stop(release_timeout=0.5)
    assert api.leases[HB].holder == ""  # released: others see it gone at once
    assert beats == [True, False]


def test_a_heartbeat_that_cannot_be_renewed_degrades_the_elector() -> None:
    api = FakeLeaseAPI()
    e = Elector(api.client("node1"), "node1", T, lambda *_: None, heartbeat=HB)
    api.observers.append(e.observe)
    e.start()
    try:
        _wait(e.heartbeat_alive)
        api.explode = True
        _wait(lambda: not e.heartbeat_alive())
        _wait(lambda: "heartbeat" in e.health.current().message)
        h = e.health.current()
        assert not h.is_ok
        assert f"heartbeat {HB} not renewed: ConnectionResetError" in h.message
    finally:
        api.explode = False
        e.stop(release_timeout=0.5)


def _rec(holder: str, rv: int, renew: str = "t", duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder, duration, "a", renew, 0, str(rv))


def test_the_view_judges_by_the_local_clock_from_the_observed_change() -> None:
    v = NodeLivenessView()
    v.observe("node2", _rec("node2", 1, "r1"), now=100.0, wall=0.0)
    assert v.state("node2", 114.9) is Liveness.ALIVE
    assert v.next_change(101.0) == 115.0
    # The same record again (a relist, another field) does not restart the clock.
    v.observe("node2", _rec("node2", 1, "r1"), now=110.0, wall=0.0)
    assert v.state("node2", 115.0) is Liveness.EXPIRED
    # A renewal seen late still counts from when it was seen.
    v.observe("node2", _rec("node2", 2, "r2"), now=120.0, wall=0.0)
    assert v.state("node2", 134.0) is Liveness.ALIVE
    # An older event behind it changes nothing.
    v.observe("node2", _rec("node2", 1, "r1"), now=121.0, wall=0.0)
    assert v.record("node2") == _rec("node2", 2, "r2")
    v.observe("node2", _rec("", 3, "r3", duration=1), now=125.0, wall=0.0)
    assert v.state("node2", 125.0) is Liveness.RELEASED
    assert v.next_change(125.0) == float("inf")
    v.observe("node2", None, now=126.0, wall=0.0)
    assert v.state("node2", 126.0) is None


def _put(db: Database, name: str, rec: LeaseRecord | None) -> None:
    with db.write_txn(LEASES) as txn:
        if rec is None:
            txn.delete_key(LEASES, name)
        else:
            txn.upsert(LEASES, row_from_record(name, rec))
        txn.commit()


def test_the_monitor_writes_l2_nodes_and_tells_listeners_what_changed() -> None:
    clock = FakeClock()
    with Database.open(None, [LEASES, L2_NODES]) as db:
        m = NodeLivenessMonitor(db, clock=clock)
        moved: list[set[str]] = []
        m.on_change(moved.append)
        m.open_feeds()
        m.run_once()
        assert not db.initialized(L2_NODES)  # leases not listed yet
        with db.write_txn(LEASES) as txn:
            txn.register_initializer(LEASES, "reflector")
            txn.initializer_done(LEASES, "reflector")
            txn.commit()
        _put(db, heartbeat_name("node1"), _rec("node1", 1))
        _put(db, heartbeat_name("node2"), _rec("node2", 2))
        _put(db, SVC, _rec("node2", 3))  # a Service lease: not a node
        m.run_once()
        assert db.initialized(L2_NODES)
        with db.read_txn() as r:
            rows = {x.node: x for x in r.all(L2_NODES)}
        assert sorted(rows) == ["node1", "node2"]
        assert rows["node1"].alive and rows["node1"].duration_seconds == 15
        assert rows["node1"].since == clock.now()
        assert moved == [{"node1", "node2"}]
        # A renewal seen rewrites nothing: the readers (every Service recomputed) stay asleep.
        with db.read_txn() as r:
            before = r.all_with_revision(L2_NODES)
        clock.advance(1)
        _put(db, heartbeat_name("node2"), _rec("node2", 6, "renewed"))
        m.run_once()
        with db.read_txn() as r:
            assert r.all_with_revision(L2_NODES) == before
        assert m.state("node2")[0] is Liveness.ALIVE

        clock.advance(9)
        _put(db, heartbeat_name("node1"), _rec("node1", 7, "later"))
        m.run_once()
        clock.advance(6)  # node2's 15 s since its renewal are up, node1's are not
        m.run_once()
        with db.read_txn() as r:
            states = {x.node: x.state for x in r.all(L2_NODES)}
        assert states == {"node1": "alive", "node2": "expired"}
        assert moved[-1] == {"node2"}

        _put(db, heartbeat_name("node1"), _rec("", 8, duration=1))
        _put(db, heartbeat_name("node2"), None)
        m.run_once()
        with db.read_txn() as r:
            states = {x.node: x.state for x in r.all(L2_NODES)}
        assert states == {"node1": "released"}
        assert moved[-1] == {"node1", "node2"}
        m.stop()


def test_the_monitor_wakes_when_a_heartbeat_expires() -> None:
    with Database.open(None, [LEASES, L2_NODES]) as db:
        with db.write_txn(LEASES) as txn:
            txn.register_initializer(LEASES, "reflector")
            txn.initializer_done(LEASES, "reflector")
            txn.commit()
        _put(db, heartbeat_name("node2"), _rec("node2", 1, duration=1))
        m = NodeLivenessMonitor(db)  # the real clock: the loop waits for the expiry itself
        gone = threading.Event()
        m.on_change(lambda nodes: gone.set() if m.state("node2")[0] is Liveness.EXPIRED else None)
        m.start()
        try:
            assert gone.wait(5)
        finally:
            m.stop()


def test_the_leases_reflector_keeps_heartbeats_and_service_leases_only() -> None:
    from agent.k8s.leases import lease_row

    def obj(name: str) -> dict[str, object]:
        return {
            "metadata": {"name": name, "resourceVersion": "7"},
            "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 15},
        }

    row = lease_row(obj(HB))
    assert row is not None and row.holder == "node1" and row.resource_version == "7"
    assert lease_row(obj(SVC)) is not None
    assert lease_row(obj("kube-controller-manager")) is None
