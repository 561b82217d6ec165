"""One owner per IP: Services whose addresses overlap follow one lease, their group leader's."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent.announcer.placement_groups import shared_ip_leaders, shared_with
from agent.leases.record import LeaseRecord, micro_time, row_from_record
from common.tables import LEASES, POLICIES, SERVICES
from common.tables.contest import L2_CONTEST, ContestEntry
from common.tables.l2_announce import Origin
from common.tables.policies import Policy
from common.tables.services import Service
from tests.unit.announcer.test_announcer import Harness, started, stopped, until

EVERYTHING = Policy("p1", 1, None, None, ("^eth0$",), False, True)


def lb(name: str, *ips: str, ns: str = "default", cls: str = "") -> Service:
    return Service(ns, name, (), "LoadBalancer", cls, None, ips)


# -- the groups (pure) ---------------------------------------------------------------------------


def test_services_sharing_nothing_have_no_group() -> None:
    assert shared_ip_leaders([lb("a", "10.0.0.1"), lb("b", "10.0.0.2")]) == {}


def test_overlapping_services_form_one_group_led_by_the_smallest_name_even_through_a_chain() -> (
    None
):
    services = [
        lb("c", "10.0.0.3", "10.0.0.2"),
        lb("b", "10.0.0.2"),
        lb("z", "10.0.0.3"),
        lb("a", "10.0.0.9"),  # alone
        lb("d", "10.0.0.4", ns="aaa"),
        lb("e", "10.0.0.4", ns="zzz"),
    ]
    leaders = shared_ip_leaders(services)
    assert leaders == {
        ("default", "b"): ("default", "b"),
        ("default", "c"): ("default", "b"),
        ("default", "z"): ("default", "b"),  # shares with c only, which shares with b
        ("aaa", "d"): ("aaa", "d"),
        ("zzz", "e"): ("aaa", "d"),
    }
    # the same answer whatever the order the table lists them in
    assert shared_ip_leaders(reversed(services)) == leaders
    by_key = {(s.namespace, s.name): s for s in services}
    assert shared_with(("default", "z"), leaders, by_key) == "10.0.0.3"


def test_an_ipv6_address_spelled_two_ways_is_one_address_and_garbage_shares_nothing() -> None:
    leaders = shared_ip_leaders(
        [lb("a", "2001:db8::1"), lb("b", "2001:DB8:0::1"), lb("c", "bogus"), lb("d", "bogus")]
    )
    assert leaders == {("default", "a"): ("default", "a"), ("default", "b"): ("default", "a")}


def test_external_ips_count_and_services_of_another_class_are_left_out() -> None:
    ext = Service("default", "x", (), "ClusterIP", "", ("10.0.0.1",))
    other = lb("a", "10.0.0.1", cls="other.io/lb")
    assert shared_ip_leaders([ext, lb("y", "10.0.0.1"), other]) == {
        ("default", "x"): ("default", "x"),
        ("default", "y"): ("default", "x"),
    }


# -- the announcer -------------------------------------------------------------------------------


@pytest.fixture
def h() -> Iterator[Harness]:
    h = started()
    h.write(LEASES, init=True)
    yield h
    stopped(h)


def contest(h: Harness) -> dict[str, ContestEntry]:
    with h.db.read_txn() as r:
        return {f"{e.namespace}/{e.name}": e for e in r.all(L2_CONTEST)}


BLUE_LEASE = "cilium-l2announce-default-blue"
RED_LEASE = "cilium-l2announce-default-red"


def test_two_services_sharing_an_ip_are_announced_from_the_leaders_lease_only(h: Harness) -> None:
    h.write(POLICIES, EVERYTHING)
    h.write(SERVICES, lb("red", "198.51.100.10", "198.51.100.20"), lb("blue", "198.51.100.10"))
    h.write(SERVICES, lb("green", "198.51.100.30"))
    want = [
        ("198.51.100.10", "eth0", (Origin("default", "blue"), Origin("default", "red"))),
        ("198.51.100.20", "eth0", (Origin("default", "red"),)),
        ("198.51.100.30", "eth0", (Origin("default", "green"),)),
    ]
    until(lambda: h.entries() == want)
    assert h.api.leases[BLUE_LEASE].holder == "node1"
    assert RED_LEASE not in h.api.leases, "a follower never campaigns for its own lease"
    assert h.api.leases["cilium-l2announce-default-green"].holder == "node1"  # sharing nothing
    until(lambda: contest(h)["default/red"].state == "announcing")
    rows = contest(h)
    assert rows["default/blue"] == ContestEntry("default", "blue", "announcing", "", "node1", "")
    red = rows["default/red"]
    assert (red.state, red.reason, red.holder) == ("announcing", "follows-lease", "node1")
    assert red.detail == (
        "shares 198.51.100.10 with other services: announced by the holder of lease " + BLUE_LEASE
    )
    assert rows["default/green"].reason == ""


def test_when_another_node_holds_the_leaders_lease_no_member_is_announced_here(
    h: Harness,
) -> None:
    now = time.time()
    other = LeaseRecord("node2", 15, micro_time(now), micro_time(now))
    h.api.leases[BLUE_LEASE] = other
    h.write(LEASES, row_from_record(BLUE_LEASE, other))
    h.write(POLICIES, EVERYTHING)
    h.write(SERVICES, lb("red", "198.51.100.10", "198.51.100.20"), lb("blue", "198.51.100.10"))
    until(lambda: contest(h).get("default/red", ContestEntry("", "")).holder == "node2")
    time.sleep(0.2)
    assert h.entries() == [], "red's own address too: the group is announced by one node"
    assert RED_LEASE not in h.api.leases
    rows = contest(h)
    assert (rows["default/red"].state, rows["default/red"].reason) == ("standby", "follows-lease")
    assert (rows["default/blue"].state, rows["default/blue"].reason) == (
        "standby",
        "held-by-other",
    )


def test_a_service_that_starts_sharing_moves_to_the_leaders_lease_and_back_when_it_stops(
    h: Harness,
) -> None:
    h.write(POLICIES, EVERYTHING)
    h.write(SERVICES, lb("red", "198.51.100.10"))
    until(lambda: h.api.leases.get(RED_LEASE, LeaseRecord()).holder == "node1")
    h.write(SERVICES, lb("blue", "198.51.100.10"))
    until(lambda: h.api.leases.get(BLUE_LEASE, LeaseRecord()).holder == "node1")
    until(lambda: h.api.leases[RED_LEASE].holder == "")  # released: blue's lease covers it
    until(lambda: len(h.entries()) == 1 and len(h.entries()[0][2]) == 2)
    h.write(SERVICES, lb("blue", "198.51.100.99"))  # shares nothing any more
    until(lambda: h.api.leases[RED_LEASE].holder == "node1")
    until(lambda: len(h.entries()) == 2)
    assert contest(h)["default/red"].reason == ""
