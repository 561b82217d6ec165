"""Gates and the l2-contest table: a refused Service is not campaigned for (a held lease is
released, its entries withdrawn), and every Service with an address gets a row saying what this
node does about it and why."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent.announcer.gates import EXCLUDE_LABEL
from agent.leases.record import LeaseRecord, micro_time, row_from_record
from common.tables import LEASES, NODES, POLICIES, SERVICES
from common.tables.contest import L2_CONTEST, ContestEntry, ContestState
from common.tables.nodes import Node
from common.tables.policies import Policy
from common.tables.services import Service
from tests.unit.announcer.test_announcer import LEASE, RED, Harness, started, stopped, until

RED_POLICY = Policy("p1", 1, {"matchLabels": {"app": "red"}}, None, ("^eth0$",), False, True)
BLUE = Service("default", "blue", (("app", "blue"),), "LoadBalancer", "", None, ("198.51.100.11",))
CLUSTER_IP = Service("default", "internal", (("app", "red"),), "ClusterIP")


@pytest.fixture
def h() -> Iterator[Harness]:
    h = started()
    h.write(LEASES, init=True)
    yield h
    stopped(h)


def contest(h: Harness) -> dict[str, ContestEntry]:
    with h.db.read_txn() as r:
        return {f"{e.namespace}/{e.name}": e for e in r.all(L2_CONTEST)}


def test_each_service_with_an_address_gets_a_row_and_the_holder_announces(h: Harness) -> None:
    h.write(POLICIES, RED_POLICY)
    h.write(SERVICES, RED, BLUE, CLUSTER_IP)
    until(lambda: contest(h).get("default/red", ContestEntry("", "")).state == "announcing")
    rows = contest(h)
    assert set(rows) == {"default/red", "default/blue"}  # no address, no row
    assert rows["default/red"] == ContestEntry(
        "default", "red", ContestState.ANNOUNCING, "", "node1", ""
    )
    assert rows["default/red"].contesting
    assert rows["default/blue"] == ContestEntry(
        "default",
        "blue",
        ContestState.NOT_SELECTED,
        "not-selected",
        "",
        "no policy selects this service for this node",
    )
    assert not rows["default/blue"].contesting


def test_a_node_labelled_excluded_releases_what_it_holds_and_contests_again_when_unlabelled(
    h: Harness,
) -> None:
    h.write(POLICIES, RED_POLICY)
    h.write(SERVICES, RED)
    until(lambda: bool(h.entries()))
    assert h.api.leases[LEASE].holder == "node1"

    h.write(NODES, Node("node1", (("zone", "a"), (EXCLUDE_LABEL, ""))))
    until(lambda: h.entries() == [] and h.api.leases[LEASE].holder == "")  # released at once
    row = contest(h)["default/red"]
    assert (row.state, row.reason, row.contesting) == ("refused", "excluded-node", False)
    assert EXCLUDE_LABEL in row.detail
    assert "1 not contested" in str(h.announcer.health.current())

    h.write(NODES, Node("node1", (("zone", "a"),)))
    until(lambda: bool(h.entries()) and h.api.leases[LEASE].holder == "node1")
    assert contest(h)["default/red"].state == "announcing"


def test_a_lease_held_by_another_node_is_standby_with_the_holder_named(h: Harness) -> None:
    now = time.time()
    other = LeaseRecord("node2", 15, micro_time(now), micro_time(now))
    h.api.leases[LEASE] = other  # node2 holds it and keeps renewing, for the test's length
    h.write(LEASES, row_from_record(LEASE, other))
    h.write(POLICIES, RED_POLICY)
    h.write(SERVICES, RED)
    until(lambda: contest(h).get("default/red", ContestEntry("", "")).holder == "node2")
    row = contest(h)["default/red"]
    assert (row.state, row.reason, row.contesting) == ("standby", "held-by-other", True)
    assert h.entries() == []
