"""The fence gate (agent/announcer/gate_fence.py): a Service is refused when one of its addresses
has no interface left to be answered on, and kept while some remain."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.announcer.gate_fence import FenceGate
from agent.announcer.gates import GateView, Refusal, default_gates
from common.tables.devices import DEVICES, Device, DeviceAddress
from common.tables.fence import L2_FENCE, Fence, FenceKind
from common.tables.l2_announce import Origin
from common.tables.policies import POLICIES, Policy
from common.tables.services import Service
from statedb import Database

VIP, VIP2 = "198.51.100.101", "198.51.100.102"
WEB = Service("shop", "web", (("color", "blue"),), "LoadBalancer", load_balancer_ips=(VIP,))
ORIGIN = Origin("shop", "web")


@pytest.fixture
def db() -> Iterator[Database]:
    with Database.open(None, [L2_FENCE, DEVICES, POLICIES]) as d:
        yield d


def write(db: Database, *rows: object) -> None:
    with db.write_txn(L2_FENCE, DEVICES, POLICIES) as txn:
        for r in rows:
            table = {Fence: L2_FENCE, Device: DEVICES, Policy: POLICIES}[type(r)]
            txn.upsert(table, r)  # type: ignore[arg-type]
        txn.commit()


def check(db: Database, *pairs: tuple[str, str], service: Service = WEB) -> Refusal | None:
    with db.read_txn() as r:
        return FenceGate().check(service, dict.fromkeys(pairs, ORIGIN), GateView("node1", {}, r))


def link_down(iface: str) -> Fence:
    return Fence(iface, detail=f"{iface} is down since 19:40:01")


def lost_entry(ip: str, iface: str) -> Fence:
    return Fence(
        iface, ip, FenceKind.DATAPATH, "datapath-failed", f"{ip}@{iface}: entry cannot be restored"
    )


def test_nothing_fenced_lets_every_service_through(db: Database) -> None:
    assert check(db, (VIP, "eth0")) is None


def test_the_only_interface_down_refuses(db: Database) -> None:
    write(db, link_down("eth0"))
    assert check(db, (VIP, "eth0")) == Refusal(
        "interface-down", f"nowhere to answer for {VIP}: eth0 is down since 19:40:01"
    )


def test_one_interface_of_two_down_keeps_the_service(db: Database) -> None:
    write(db, link_down("eth0"))
    assert check(db, (VIP, "eth0"), (VIP, "eth1")) is None
    write(db, link_down("eth1"))
    refusal = check(db, (VIP, "eth0"), (VIP, "eth1"))
    assert refusal is not None
    assert refusal.detail == (
        f"nowhere to answer for {VIP}: eth0 is down since 19:40:01; eth1 is down since 19:40:01"
    )


def test_another_services_interface_down_does_not_matter(db: Database) -> None:
    write(db, link_down("eth1"))
    assert check(db, (VIP, "eth0")) is None


def test_a_lost_entry_refuses_only_its_address(db: Database) -> None:
    write(db, lost_entry(VIP2, "eth0"))
    assert check(db, (VIP, "eth0")) is None
    refusal = check(db, (VIP, "eth0"), (VIP2, "eth0"))
    assert refusal == Refusal(
        "datapath-failed", f"nowhere to answer for {VIP2}: {VIP2}@eth0: entry cannot be restored"
    )


def test_a_detached_interface_refuses_every_address_on_it(db: Database) -> None:
    write(db, Fence("eth0", "", FenceKind.DATAPATH, "datapath-failed", "program gone"))
    assert check(db, (VIP, "eth0"))
    assert check(db, (VIP, "eth0"), (VIP, "eth1")) is None


def test_a_link_reason_wins_over_a_datapath_one_on_the_same_interface(db: Database) -> None:
    write(db, Fence("eth0", "", FenceKind.DATAPATH, "datapath-failed", "gone"), link_down("eth0"))
    refusal = check(db, (VIP, "eth0"))
    assert refusal is not None and refusal.reason == "interface-down"


def test_a_down_interface_is_not_selected_and_still_refuses(db: Database) -> None:
    # Down devices are not selected, so the announcer has no entries for the Service at all; the
    # gate asks the policies as if the fenced interface were there.
    eth0 = Device(2, "eth0", addresses=(DeviceAddress("198.51.100.11"),), selected=False)
    policy = Policy("p", 1, {"matchLabels": {"color": "blue"}}, None, ("^eth[0-9]+",), False, True)
    write(db, eth0, policy, link_down("eth0"))
    refusal = check(db)
    assert refusal is not None and refusal.reason == "interface-down"
    # Not when no policy would announce the Service there: then it is not the fence's business.
    other = Service("shop", "db", (("color", "red"),), "LoadBalancer", load_balancer_ips=(VIP2,))
    assert check(db, service=other) is None


def test_fencing_is_in_the_default_gates_only_when_asked() -> None:
    assert "fence" not in [g.name for g in default_gates()]
    assert [g.name for g in default_gates(fence=True)][-1] == "fence"
