"""The placement gate in the announcer: contest what placement puts here, stand by as successor,
release for balance one lease per pace, and contest anything free for longer than the grace."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from agent.announcer.controller import L2Announcer
from agent.announcer.placement import Unit, place, ranking
from agent.announcer.placement_gate import PlacementGate
from agent.leases.record import LeaseRecord, micro_time, row_from_record
from agent.runtime import FakeClock
from common.leases import lease_name
from common.tables import LEASES, NODES, POLICIES, SERVICES
from common.tables.contest import L2_CONTEST, ContestEntry
from common.tables.endpoint_slices import ENDPOINT_SLICES, EndpointSlice
from common.tables.node_liveness import L2_NODES, Liveness, NodeLiveness
from common.tables.nodes import Node
from common.tables.policies import Policy
from common.tables.services import Service
from tests.unit.announcer.test_announcer import started, stopped, until

EVERYTHING = Policy("p1", 1, None, None, ("^eth0$",), False, True)
ALL = frozenset({"node1", "node2", "node3"})
PACE = 2.0


def svc(i: int) -> Service:
    return Service("default", f"s{i:02d}", (), "LoadBalancer", "", None, (f"198.51.100.{100 + i}",))


def lease(i: int) -> str:
    return lease_name("default", f"s{i:02d}")


class Lab:
    def __init__(
        self, grace: float, rebalance: bool = True, heartbeats_listed: bool = True
    ) -> None:
        self.clock = FakeClock()
        h = started()
        h.announcer.stop()  # replaced by one with the gate and the fake clock
        self.gate = PlacementGate(
            pace=PACE,
            grace=grace,
            rebalance=rebalance,
            clock=self.clock,
            leading=h.elector.is_leading,
        )
        h.announcer = L2Announcer(
            h.db, h.elector, "node1", h._conditions_written, clock=self.clock, gates=[self.gate]
        )
        h.write(LEASES, init=True)
        h.api.observers.append(self._reflect)  # the leases table follows the API, as watched
        h.write(NODES, Node("node1", (("zone", "a"),)), Node("node2"), Node("node3"))
        if heartbeats_listed:
            h.write(L2_NODES, init=True)
        h.write(POLICIES, EVERYTHING)
        self.h = h

    def _reflect(self, name: str, rec: LeaseRecord | None) -> None:
        if rec is None:
            with self.h.db.write_txn(LEASES) as txn:
                row = txn.get(LEASES, name)
                if row is not None:
                    txn.delete(LEASES, row)
        else:
            self.h.write(LEASES, row_from_record(name, rec))

    def alive(self, *nodes: str) -> None:
        with self.h.db.write_txn(L2_NODES) as txn:
            for row in txn.all(L2_NODES):
                txn.delete(L2_NODES, row)
            for n in nodes:
                txn.upsert(L2_NODES, NodeLiveness(n, Liveness.ALIVE, duration_seconds=15))

    def held_by_other(self, name: str, holder: str) -> None:
        now = time.time()
        rec = LeaseRecord(holder, 15, micro_time(now), micro_time(now))
        self.h.api.leases[name] = rec  # renewed, for the test's length
        self.h.write(LEASES, row_from_record(name, rec))

    def mine(self) -> set[str]:
        return {k for k, r in self.h.api.leases.items() if r.holder == "node1"}

    def contest(self) -> dict[str, ContestEntry]:
        with self.h.db.read_txn() as r:
            return {e.name: e for e in r.all(L2_CONTEST)}


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab(grace=100.0)
    yield lab
    stopped(lab.h)


def placed(n: int, alive: frozenset[str] = ALL) -> dict[str, str]:
    return dict(place([Unit(lease(i), alive) for i in range(n)]).owner)


def test_a_node_contests_only_what_placement_puts_on_it(lab: Lab) -> None:
    lab.alive("node1", "node2", "node3")
    lab.h.write(SERVICES, *[svc(i) for i in range(30)])
    lab.h.announcer.start()
    ours = {k for k, n in placed(30).items() if n == "node1"}
    assert 0 < len(ours) <= 11
    until(lambda: len(lab.mine()) >= len(ours) - 1)
    time.sleep(0.3)
    # what it takes first moves the bounded-load placement of the rest a little (and the other
    # nodes, which take theirs meanwhile, would move it back): about its share, never more than
    # the bound, and nothing it did not keep was even tried
    mine = lab.mine()
    assert len(ours) - 2 <= len(mine) <= 11
    assert set(lab.h.api.leases) == mine
    rows = lab.contest()
    refused = [r for r in rows.values() if r.state == "refused"]
    assert len(refused) == 30 - len(mine)
    assert all(r.reason == "placed-elsewhere" for r in refused)
    assert "placed on node" in refused[0].detail and "free for 100s" in refused[0].detail


def test_a_lease_free_for_longer_than_the_grace_is_contested_by_anyone() -> None:
    lab = Lab(grace=3.0)
    two = frozenset({"node1", "node2"})
    theirs = next(i for i in range(30) if place([Unit(lease(i), two)]).owner[lease(i)] == "node2")
    try:
        lab.alive("node1", "node2")  # node2's agent never takes it (it answers nothing here)
        lab.h.write(SERVICES, svc(theirs))
        lab.h.announcer.start()
        until(lambda: lab.contest().get(f"s{theirs:02d}", ContestEntry("", "")).state == "refused")
        lab.clock.advance(2.9)
        time.sleep(0.3)
        assert lab.mine() == set()
        lab.clock.advance(0.2)
        until(lambda: lab.mine() == {lease(theirs)})
        until(lambda: lab.contest()[f"s{theirs:02d}"].state == "announcing")
    finally:
        stopped(lab.h)


def test_until_the_heartbeats_are_listed_a_node_waits_the_grace_then_contests_everything() -> None:
    """A node that cannot list the heartbeat Leases (missing RBAC) is not kept from every lease:
    after the grace its announcer goes on as without placement, so its elector tries, and logs
    why it fails. Meanwhile nothing is computed, so nothing it answered is withdrawn."""
    lab = Lab(grace=3.0, heartbeats_listed=False)
    try:
        lab.h.write(SERVICES, *[svc(i) for i in range(3)])
        lab.h.announcer.start()
        time.sleep(0.3)
        assert lab.contest() == {} and lab.mine() == set()
        lab.clock.advance(3.0)
        until(lambda: lab.mine() == {lease(i) for i in range(3)})
        until(lambda: {r.state for r in lab.contest().values()} == {"announcing"})
    finally:
        stopped(lab.h)


def test_a_lease_held_by_a_live_node_is_left_to_it_and_its_successor(lab: Lab) -> None:
    lab.alive("node1", "node2", "node3")
    services = [svc(i) for i in range(12)]
    for i in range(12):
        lab.held_by_other(lease(i), "node2")  # all on node2, within no cap: 12 > 5
    lab.h.write(SERVICES, *services)
    lab.h.announcer.start()
    units = [Unit(lease(i), ALL, "node2") for i in range(12)]
    p = place(units)
    successor_here = {k for k, n in p.successor.items() if n == "node1"}
    moving_here = {k for k, n in p.moving.items() if n == "node1"}
    until(lambda: len(lab.contest()) == 12)
    until(lambda: all(r.state != "not-selected" for r in lab.contest().values()))
    rows = lab.contest()
    contesting = {k for k, r in rows.items() if r.contesting}
    assert contesting == {
        k.removeprefix("cilium-l2announce-default-") for k in successor_here | moving_here
    }
    assert moving_here, "node2 holds more than its cap: some move here"
    other = next(r for k, r in rows.items() if not r.contesting)
    assert other.reason == "placed-elsewhere" and "node2" in other.detail


def test_a_lease_released_for_balance_is_left_to_its_destination_for_the_grace(lab: Lab) -> None:
    """Placed anew once free, a released lease could land elsewhere (the holders are changing
    at that moment): the destination of the move, as every node saw it, keeps it."""
    lab.alive("node1", "node2", "node3")
    for i in range(12):
        lab.held_by_other(lease(i), "node2")
    moved = lease(9)
    held = [Unit(lease(i), ALL, "node2") for i in range(12)]
    assert place(held).moving[moved] == "node3"
    free = [dataclasses.replace(u, holder="") if u.key == moved else u for u in held]
    assert place(free).owner[moved] == "node1"  # where a fresh placement would put it
    lab.h.write(SERVICES, *[svc(i) for i in range(12)])
    lab.h.announcer.start()
    until(lambda: lab.contest().get("s09", ContestEntry("", "")).state == "refused")
    lab.held_by_other(moved, "")  # node2 hands it over
    until(lambda: lab.contest()["s09"].holder == "")
    time.sleep(0.3)
    assert moved not in lab.mine()
    row = lab.contest()["s09"]
    assert (row.state, row.reason) == ("refused", "placed-elsewhere")
    assert "placed on node3" in row.detail
    lab.clock.advance(100.0)  # node3 never took it: after the grace, anyone
    until(lambda: moved in lab.mine())


def test_a_holder_over_its_cap_hands_over_one_lease_per_pace(lab: Lab) -> None:
    lab.alive("node1")
    lab.h.write(SERVICES, *[svc(i) for i in range(30)])
    lab.h.announcer.start()
    until(lambda: len(lab.mine()) == 30)  # alone: everything
    lab.alive("node1", "node2", "node3")
    until(lambda: len(lab.mine()) == 29)
    time.sleep(0.3)
    assert len(lab.mine()) == 29, "one at a time"
    assert lab.gate.moves == 1
    (gone,) = {lease(i) for i in range(30)} - lab.mine()
    row = lab.contest()[gone.removeprefix("cilium-l2announce-default-")]
    assert (row.state, row.reason) == ("refused", "placed-elsewhere")  # left to its new place
    assert "placed on node2" in row.detail or "placed on node3" in row.detail
    for left in range(28, 10, -1):
        lab.clock.advance(PACE)
        until(lambda left=left: len(lab.mine()) == left)  # type: ignore[misc]
    lab.clock.advance(PACE)
    time.sleep(0.3)
    assert len(lab.mine()) == 11, "down to its cap, ceil(30/3) + 1, and no further"
    assert lab.gate.moves == 19


def test_without_rebalancing_a_holder_keeps_what_it_holds() -> None:
    lab = Lab(grace=100.0, rebalance=False)
    try:
        lab.alive("node1")
        lab.h.write(SERVICES, *[svc(i) for i in range(12)])
        lab.h.announcer.start()
        until(lambda: len(lab.mine()) == 12)
        lab.alive("node1", "node2", "node3")
        lab.clock.advance(10 * PACE)
        time.sleep(0.3)
        assert len(lab.mine()) == 12
        assert lab.gate.moves == 0
    finally:
        stopped(lab.h)


def test_a_lease_of_a_dead_holder_goes_to_its_place(lab: Lab) -> None:
    lab.alive("node1", "node2", "node3")
    for i in range(12):
        lab.held_by_other(lease(i), "node3")
    lab.h.write(SERVICES, *[svc(i) for i in range(12)])
    lab.h.announcer.start()
    until(lambda: len(lab.contest()) == 12)
    lab.alive("node1", "node2")  # node3's heartbeat expired; its leases are still on record
    two = frozenset({"node1", "node2"})
    ours = {k for k, n in place([Unit(lease(i), two, "node3") for i in range(12)]).owner.items()
            if n == "node1"}  # fmt: skip
    until(lambda: {k for k, r in lab.contest().items() if r.contesting}
          == {k.removeprefix("cilium-l2announce-default-") for k in ours})  # fmt: skip
    assert 0 < len(ours) < 12


def test_a_successor_keeps_standing_by_when_its_holder_dies_whatever_placement_says_then(
    lab: Lab,
) -> None:
    two = frozenset({"node1", "node2"})
    u = next(
        i
        for i in range(50)
        if place([Unit(lease(i), ALL, "node3")]).successor.get(lease(i)) == "node1"
    )
    lab.alive("node1", "node2", "node3")
    lab.held_by_other(lease(u), "node3")
    lab.h.write(SERVICES, svc(u))
    lab.h.announcer.start()
    name = f"s{u:02d}"
    until(lambda: lab.contest().get(name, ContestEntry("", "")).state == "standby")
    # node3 dies while Services come in that all prefer node1 and sort before it: placement now
    # puts it on node2, but node1 has followed the lease all along
    newcomers = [
        Service("default", f"a{j}", (), "LoadBalancer", "", None, (f"198.51.100.{10 + j}",))
        for j in range(40)
    ]
    first = [s for s in newcomers if ranking(lease_name("default", s.name), two)[0] == "node1"]

    def owner_with(k: int) -> str:
        units = [Unit(lease_name("default", s.name), two) for s in first[:k]]
        return place([*units, Unit(lease(u), two, "node3")]).owner[lease(u)]

    k = next(k for k in range(1, len(first)) if owner_with(k) == "node2")
    with lab.h.db.write_txn(SERVICES, L2_NODES) as txn:  # at once: no pass sees one alone
        for s in first[:k]:
            txn.upsert(SERVICES, s)
        txn.delete(L2_NODES, NodeLiveness("node3"))
    until(lambda: len(lab.contest()) == k + 1)
    time.sleep(0.3)
    row = lab.contest()[name]
    assert row.contesting, row


def test_a_local_service_is_placed_among_the_nodes_with_a_local_endpoint(lab: Lab) -> None:
    two = frozenset({"node1", "node2"})
    i = next(i for i in range(50) if place([Unit(lease(i), two)]).owner[lease(i)] == "node2")
    local = dataclasses.replace(svc(i), external_traffic_policy="Local")
    lab.alive("node1", "node2")
    endpoints = EndpointSlice("default", f"s{i:02d}-abc", f"s{i:02d}", nodes=("node1",), ready=1)
    lab.h.write(ENDPOINT_SLICES, endpoints, init=True)
    lab.h.write(SERVICES, local)
    lab.h.announcer.start()
    until(lambda: lab.mine() == {lease(i)})  # at once: node2, its place by hash, has none
