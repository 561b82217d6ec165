"""The link fence, the fence gate and the real l2-announcer and elector together (a fake lease
API): the holder whose only announcing interface goes down releases its lease and says why in
``l2-contest``; with one of two interfaces down it keeps the Service; once the link is back it
contests again only after the hold-down (virtual time)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from agent.announcer.controller import L2Announcer
from agent.announcer.gates import default_gates
from agent.fence.links import IFF_RUNNING, LinkFences, LinkFenceWatcher
from agent.runtime import FakeClock
from common.tables import DEVICES, LEASES, NODES, POLICIES, SERVICES
from common.tables.contest import L2_CONTEST, ContestEntry
from common.tables.devices import Device, DeviceAddress
from common.tables.nodes import Node
from common.tables.policies import Policy
from tests.unit.announcer.test_announcer import LEASE, RED, Harness, stopped, until

HOLD = 5.0
UP = 0x1 | IFF_RUNNING
ETH0 = Device(2, "eth0", addresses=(DeviceAddress("198.51.100.2"),), raw_flags=UP, selected=True)
ETH1 = Device(3, "eth1", addresses=(DeviceAddress("203.0.113.2"),), raw_flags=UP, selected=True)
ON_ETH0 = Policy("p1", 1, {"matchLabels": {"app": "red"}}, None, ("^eth0$",), False, True)
ON_BOTH = dataclasses.replace(ON_ETH0, interfaces=("^eth[01]$",))


def down(d: Device) -> Device:
    """As the devices controller shows a link set down: not up, not running, not selected."""
    return dataclasses.replace(d, raw_flags=0, selected=False, not_selected_reason="x")


class Rig:
    def __init__(self) -> None:
        self.h = Harness()
        # The agent's gates, fencing included, instead of the harness's.
        self.h.announcer = L2Announcer(
            self.h.db, self.h.elector, "node1", lambda *_: None, gates=default_gates(fence=True)
        )
        self.clock = FakeClock()
        self.fence = LinkFenceWatcher(self.h.db, LinkFences(hold_down=HOLD), clock=self.clock)

    def start(self) -> None:
        h = self.h
        h.write(NODES, Node("node1", (("zone", "a"),)), init=True)
        h.write(DEVICES, ETH0, ETH1, init=True)
        h.write(SERVICES, RED, init=True)
        h.write(LEASES, init=True)
        self.fence.open_feeds()  # no job of its own: run_once, with virtual time
        self.fence.run_once()
        h.elector.start()
        h.announcer.start()

    def devices(self, *rows: Device) -> None:
        self.h.write(DEVICES, *rows)
        self.fence.run_once()

    def contest(self) -> ContestEntry:
        with self.h.db.read_txn() as r:
            row = r.get(L2_CONTEST, "default", "red")
        return row if row is not None else ContestEntry("", "")

    def holder(self) -> str:
        record = self.h.api.leases.get(LEASE)
        return record.holder if record is not None else ""


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    r.start()
    yield r
    r.fence.stop()
    stopped(r.h)


def test_the_only_interface_down_releases_and_the_hold_down_delays_contesting(rig: Rig) -> None:
    rig.h.write(POLICIES, ON_ETH0, init=True)
    until(lambda: rig.holder() == "node1" and bool(rig.h.entries()))

    rig.devices(down(ETH0))
    until(lambda: rig.holder() == "" and rig.h.entries() == [])  # released at once
    row = rig.contest()
    assert (row.state, row.reason) == ("refused", "interface-down")
    assert "eth0 is down since" in row.detail

    rig.devices(ETH0)  # back: held down
    rig.clock.advance(HOLD - 0.1)
    rig.fence.run_once()
    until(lambda: "contesting again after the 5s hold-down" in rig.contest().detail)
    assert rig.contest().state == "refused"
    assert rig.holder() == ""

    rig.clock.advance(0.1)
    rig.fence.run_once()
    until(lambda: rig.holder() == "node1" and rig.contest().state == "announcing")


def test_one_interface_of_two_down_keeps_the_service(rig: Rig) -> None:
    rig.h.write(POLICIES, ON_BOTH, init=True)
    until(lambda: len(rig.h.entries()) == 2)
    before = rig.h.announcer.recomputes
    rig.devices(dataclasses.replace(ETH1, raw_flags=0x1))  # eth1 loses its carrier
    until(lambda: rig.h.announcer.recomputes > before)
    assert rig.contest().state == "announcing"  # answered on eth0
    assert rig.holder() == "node1"
    rig.devices(dataclasses.replace(ETH0, raw_flags=0x1))  # and now eth0 too
    until(lambda: rig.holder() == "")
    assert rig.contest().reason == "interface-down"
