"""The announcer over an in-memory database, a real elector and an in-memory lease API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.announcer.controller import L2Announcer
from agent.leases.election import Timings
from agent.leases.elector import Elector
from agent.leases.record import LeaseRecord
from common.tables import CATALOGUE, DEVICES, L2_ANNOUNCE, NODES, POLICIES, SERVICES
from common.tables.devices import Device, DeviceAddress
from common.tables.l2_announce import Origin
from common.tables.nodes import Node
from common.tables.policies import Policy
from common.tables.services import Service
from statedb import Database, Table
from tests.unit.leases.fake_api import FakeLeaseAPI

LEASE = "cilium-l2announce-default-red"
SEED_MSG = (
    "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
)


def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


class Harness:
    def __init__(self) -> None:
        self.db = Database.open(None, CATALOGUE.values())
        self.api = FakeLeaseAPI()
        self.conditions: list[tuple[str, int, list[dict[str, Any]]]] = []
        self.elector = Elector(
            self.api.client("node1"), "node1", Timings(2.0, 1.0, 0.2), self._on_change
        )
        self.api.observers.append(self.elector.observe)
        self.announcer = L2Announcer(self.db, self.elector, "node1", self._conditions_written)

    def _conditions_written(self, name: str, conds: list[dict[str, Any]]) -> None:
        # Recorded with the generation the conditions were written for.
        generation = conds[0]["observedGeneration"] if conds else 0
        self.conditions.append((name, generation, conds))

    def _on_change(self, lease: str, leading: bool, reason: str) -> None:
        self.announcer.on_leadership(lease, leading, reason)

    def write(self, table: Table[Any], *rows: Any, init: bool = False) -> None:
        with self.db.write_txn(table) as txn:
            for row in rows:
                txn.upsert(table, row)
            if init:
                txn.register_initializer(table, "test")
                txn.initializer_done(table, "test")

    def delete(self, table: Table[Any], row: Any) -> None:
        with self.db.write_txn(table) as txn:
            txn.delete(table, row)

    def entries(self) -> list[tuple[str, str, tuple[Origin, ...]]]:
        with self.db.read_txn() as r:
            return [(e.ip, e.network_interface, e.origins) for e in r.all(L2_ANNOUNCE)]


def started(external_ips: bool = False) -> Harness:
    """A harness with node1 (zone a), two selected devices, empty Services and policies, and
    its elector and announcer running."""
    h = Harness()
    h.announcer.external_ips = external_ips
    h.write(NODES, Node("node1", (("zone", "a"),)), init=True)
    h.write(
        DEVICES,
        Device(2, "eth0", addresses=(DeviceAddress("198.51.100.2"),), selected=True),
        Device(3, "eth1", addresses=(DeviceAddress("203.0.113.2"),), selected=True),
        init=True,
    )
    h.write(SERVICES, init=True)
    h.write(POLICIES, init=True)
    h.elector.start()
    h.announcer.start()
    return h


def stopped(h: Harness) -> None:
    h.announcer.stop()
    h.elector.stop(release_timeout=0.5)
    h.db.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    h = started()
    yield h
    stopped(h)


RED = Service("default", "red", (("app", "red"),), "LoadBalancer", "", None, ("198.51.100.10",))


def test_leader_writes_entries_for_selected_services_on_policy_devices(h: Harness) -> None:
    h.write(
        POLICIES, Policy("p1", 1, {"matchLabels": {"app": "red"}}, None, ("^eth0$",), False, True)
    )
    h.write(SERVICES, RED)
    until(lambda: h.entries() == [("198.51.100.10", "eth0", (Origin("default", "red"),))])
    assert h.api.leases[LEASE].holder == "node1"
    assert h.conditions == [], "valid policy with no existing condition: nothing written"


def test_the_seeds_invalid_policy_gets_the_seeds_condition_and_fixing_it_clears_it(
    h: Harness,
) -> None:
    bad = {"matchExpressions": [{"key": "something", "operator": "NotIn"}]}
    h.write(POLICIES, Policy("policy1", 1, bad, None, (), False, True))
    h.write(SERVICES, RED)
    until(lambda: bool(h.conditions))
    name, gen, conds = h.conditions[-1]
    assert (name, gen) == ("policy1", 1)
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in conds] == [
        ("io.cilium/bad-service-selector", "True", "error", SEED_MSG)
    ]
    assert h.entries() == []
    # The watch brings the written status back, then the user fixes the policy.
    h.write(POLICIES, Policy("policy1", 2, None, None, (), False, True, conds))
    until(lambda: h.conditions[-1][1] == 2)
    assert [(c["status"], c["message"]) for c in h.conditions[-1][2]] == [("False", "")]
    until(lambda: len(h.entries()) == 2)


def test_losing_selection_withdraws_entries_and_releases_the_lease(h: Harness) -> None:
    h.write(POLICIES, Policy("p1", 1, None, None, (), False, True))
    h.write(SERVICES, RED)
    until(lambda: len(h.entries()) == 2)
    h.write(SERVICES, Service("default", "red", load_balancer_ips=("198.51.100.10",),
                              load_balancer_class="other.io/lb"))  # fmt: skip
    until(lambda: h.entries() == [])
    until(lambda: h.api.leases[LEASE].holder == "")


def test_two_services_sharing_an_ip_merge_origins(h: Harness) -> None:
    h.write(POLICIES, Policy("p1", 1, None, None, ("eth1",), False, True))
    blue = Service("default", "blue", (), "LoadBalancer", "", None, ("198.51.100.10",))
    h.write(SERVICES, RED, blue)
    until(
        lambda: (
            h.entries()
            == [("198.51.100.10", "eth1", (Origin("default", "blue"), Origin("default", "red")))]
        )
    )
    h.delete(SERVICES, blue)
    until(lambda: h.entries() == [("198.51.100.10", "eth1", (Origin("default", "red"),))])


def test_stop_withdraws_everything(h: Harness) -> None:
    h.write(POLICIES, Policy("p1", 1, None, None, (), False, True))
    h.write(SERVICES, RED)
    until(lambda: len(h.entries()) == 2)
    h.announcer.stop()
    assert h.entries() == []


def restarted_holding_red(h: Harness) -> threading.Event:
    """node1 restarts while the API still shows it holding red's lease, and retaking the lease
    hangs until the returned gate is set: the inputs are all there, the elector is unsettled."""
    h.api.leases[LEASE] = LeaseRecord("node1", 2, "t", "t", 3, "1")
    h.write(NODES, Node("node1"), init=True)
    h.write(DEVICES, Device(2, "eth0", selected=True), init=True)
    h.write(SERVICES, RED, init=True)
    h.write(POLICIES, Policy("p1", 1, None, None, (), False, True), init=True)
    gate = threading.Event()
    real_update = h.api.update

    def slow_update(who: str, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord:
        gate.wait(5)
        return real_update(who, name, record, timeout)

    h.api.update = slow_update  # type: ignore[method-assign]
    return gate


def test_l2_announce_is_initialized_only_after_our_old_leases_are_taken_back() -> None:
    h = Harness()
    gate = restarted_holding_red(h)
    h.elector.start()
    h.announcer.start()
    try:
        time.sleep(0.3)
        assert not h.db.initialized(L2_ANNOUNCE), "must not be initialized while retaking"
        gate.set()
        until(lambda: h.db.initialized(L2_ANNOUNCE))
        assert h.entries() == [("198.51.100.10", "eth0", (Origin("default", "red"),))]
        assert h.api.leases[LEASE].transitions == 3, "our own lease: no new transition"
    finally:
        h.announcer.stop()
        h.elector.stop(release_timeout=0.5)
        h.db.close()


def test_a_service_no_longer_campaigned_for_is_reported_so_its_next_announcement_is_news(
    h: Harness,
) -> None:
    # The Service status writer skips announcing a Service whose annotation already names this
    # node; a Service deleted (or unselected) and back must be announced again, so dropping its
    # campaign reports it like another holder would.
    seen: list[tuple[str, str, str]] = []
    h.announcer._on_other_holder = lambda ns, name, holder: seen.append((ns, name, holder))
    h.write(POLICIES, Policy("p1", 1, None, None, ("^eth0$",), False, True))
    h.write(SERVICES, RED)
    until(lambda: len(h.entries()) == 1)
    h.delete(SERVICES, RED)
    until(lambda: ("default", "red", "") in seen)
