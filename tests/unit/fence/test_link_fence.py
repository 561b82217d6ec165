"""The link fence (agent/fence/links.py): which interfaces get an ``l2-fence`` row, when it goes,
and the hold-down that keeps a bouncing link from making the node campaign on and off. Time is a
FakeClock, moved by hand."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from agent.devices.options import DevicesOptions
from agent.fence.links import IFF_RUNNING, LinkFences, LinkFenceWatcher
from agent.runtime import FakeClock
from common.tables.devices import DEVICES, Device, DeviceAddress
from common.tables.fence import L2_FENCE, Fence, FenceKind
from statedb import Database

UP = 0x1
LOWER = UP | IFF_RUNNING | 0x2 | 0x1000  # up, running, broadcast, multicast
HOLD = 5.0


def dev(name: str, ifindex: int, flags: int = LOWER, selected: bool = True, **kw: object) -> Device:
    reason = "" if selected else "missing required flag (mask=0x1, flags=0x1002)"
    return Device(
        ifindex=ifindex,
        name=name,
        hw_addr=f"02:00:00:00:00:{ifindex:02x}",
        raw_flags=flags,
        addresses=(DeviceAddress("198.51.100.11"),),
        selected=selected,
        not_selected_reason=reason,
        **kw,  # type: ignore[arg-type]
    )


def down(d: Device) -> Device:
    """As the devices controller shows a link set down: no IFF_UP, no carrier, not selected."""
    return dataclasses.replace(
        d, raw_flags=d.raw_flags & ~(UP | IFF_RUNNING), selected=False, not_selected_reason="x"
    )


def no_carrier(d: Device) -> Device:
    """Up but the cable (or the peer) is gone: still selected, no IFF_RUNNING."""
    return dataclasses.replace(d, raw_flags=d.raw_flags & ~IFF_RUNNING)


ETH0 = dev("eth0", 2)
ETH1 = dev("eth1", 3)
MGMT = dev("mgmt0", 4, selected=False, type="veth")


def test_a_healthy_node_has_no_rows() -> None:
    f = LinkFences(hold_down=HOLD)
    assert f.observe([ETH0, ETH1, MGMT], 0.0, 100.0) == {}
    assert f.next_deadline() is None


def test_down_then_back_then_held_down_then_cleared() -> None:
    f = LinkFences(hold_down=HOLD)
    f.observe([ETH0], 0.0, 100.0)
    rows = f.observe([down(ETH0)], 1.0, 101.0)
    assert list(rows) == ["eth0"]
    row = rows["eth0"]
    assert (row.kind, row.reason, row.since, row.until) == ("link", "interface-down", 101.0, 0.0)
    assert row.detail.startswith("eth0 is down since ")
    # Back up: still fenced for the hold-down, and the row says until when.
    rows = f.observe([ETH0], 10.0, 110.0)
    assert rows["eth0"].until == 110.0 + HOLD
    assert "up with carrier again" in rows["eth0"].detail
    assert f.next_deadline() == 10.0 + HOLD
    assert f.observe([ETH0], 10.0 + HOLD - 0.01, 0.0) != {}
    assert f.observe([ETH0], 10.0 + HOLD, 0.0) == {}
    assert f.next_deadline() is None


def test_no_carrier_is_fenced_although_the_device_stays_selected() -> None:
    f = LinkFences(hold_down=HOLD)
    rows = f.observe([no_carrier(ETH0)], 0.0, 100.0)
    assert rows["eth0"].detail.startswith("eth0 has no carrier since")


def test_a_flap_during_the_hold_down_starts_it_again() -> None:
    f = LinkFences(hold_down=HOLD)
    f.observe([ETH0], 0.0, 0.0)
    f.observe([down(ETH0)], 1.0, 0.0)
    f.observe([ETH0], 2.0, 0.0)  # back: hold-down until 7
    rows = f.observe([no_carrier(ETH0)], 4.0, 0.0)  # bad again
    assert rows["eth0"].until == 0.0
    assert "bounced 1 time(s)" in rows["eth0"].detail
    assert f.next_deadline() is None
    f.observe([ETH0], 6.0, 0.0)  # back again: hold-down until 11, not 7
    assert f.observe([ETH0], 8.0, 0.0) != {}
    assert f.observe([ETH0], 11.0, 0.0) == {}


def test_a_zero_hold_down_clears_at_once() -> None:
    f = LinkFences(hold_down=0.0)
    f.observe([down(ETH0)], 0.0, 0.0)
    assert f.observe([ETH0], 1.0, 0.0) == {}


def test_interfaces_that_never_carry_announcements_are_not_fenced() -> None:
    f = LinkFences(hold_down=HOLD)
    lo = dev("lo", 1, flags=UP | 0x8, selected=False)
    assert f.observe([down(MGMT), down(lo), down(dev("lxc12", 9, selected=False))], 0.0, 0) == {}
    # A veth is an uplink only with a default route, which goes with the link: it counts once
    # it was seen selected.
    veth = dev("veth0", 7, type="veth")
    assert f.observe([down(veth)], 0.0, 0) == {}
    f.observe([veth], 1.0, 0)
    assert "veth0" in f.observe([down(veth)], 2.0, 0)


def test_an_uplink_down_when_the_agent_starts_is_fenced() -> None:
    # Never seen selected (the agent restarted while it was down), but selectable when up.
    f = LinkFences(hold_down=HOLD)
    assert "eth0" in f.observe([down(ETH0)], 0.0, 0.0)


def test_a_devices_filter_decides_what_would_be_selected() -> None:
    f = LinkFences(DevicesOptions(("eth1",)), hold_down=HOLD)
    assert list(f.observe([down(ETH0), down(ETH1)], 0.0, 0.0)) == ["eth1"]


def test_a_deleted_interface_loses_its_row() -> None:
    f = LinkFences(hold_down=HOLD)
    f.observe([down(ETH0), ETH1], 0.0, 0.0)
    assert f.observe([ETH1], 1.0, 0.0) == {}


def test_a_negative_hold_down_is_refused() -> None:
    with pytest.raises(ValueError, match="hold_down must be >= 0 seconds, got -1"):
        LinkFences(hold_down=-1)


# -- the watcher: the same, written into l2-fence -------------------------------------------------


@pytest.fixture
def db() -> Iterator[Database]:
    with Database.open(None, [DEVICES, L2_FENCE]) as d:
        yield d


def devices(db: Database, *rows: Device, initialized: bool = True) -> None:
    with db.write_txn(DEVICES) as txn:
        for old in txn.all(DEVICES):
            txn.delete(DEVICES, old)
        for r in rows:
            txn.upsert(DEVICES, r)
        if initialized and not txn.initialized(DEVICES):
            txn.register_initializer(DEVICES, "test")
            txn.initializer_done(DEVICES, "test")
        txn.commit()


def fences(db: Database) -> list[Fence]:
    with db.read_txn() as r:
        return r.all(L2_FENCE)


def test_the_watcher_waits_for_devices_then_initializes_the_table(db: Database) -> None:
    clock = FakeClock()
    w = LinkFenceWatcher(db, LinkFences(hold_down=HOLD), clock=clock)
    with db.write_txn(L2_FENCE) as txn:
        txn.register_initializer(L2_FENCE, "link-fence")
        txn.commit()
    w.run_once()
    assert not db.initialized(L2_FENCE)  # devices not listed yet: nothing is known
    devices(db, ETH0)
    w.run_once()
    assert db.initialized(L2_FENCE)
    assert fences(db) == []


def test_the_watcher_writes_and_removes_only_link_rows(db: Database) -> None:
    clock = FakeClock()
    w = LinkFenceWatcher(db, LinkFences(hold_down=HOLD), clock=clock)
    with db.write_txn(L2_FENCE) as txn:
        txn.register_initializer(L2_FENCE, "link-fence")
        txn.upsert(L2_FENCE, Fence("eth1", "198.51.100.101", FenceKind.DATAPATH, "datapath-failed"))
        txn.commit()
    devices(db, ETH0, ETH1)
    w.run_once()
    devices(db, down(ETH0), ETH1)
    w.run_once()
    assert [(f.interface, f.kind) for f in fences(db)] == [("eth0", "link"), ("eth1", "datapath")]
    devices(db, ETH0, ETH1)
    clock.advance(HOLD)
    w.run_once()  # back: held down
    assert [(f.interface, f.until > 0) for f in fences(db) if f.kind == "link"] == [("eth0", True)]
    clock.advance(HOLD)
    w.run_once()
    assert [(f.interface, f.kind) for f in fences(db)] == [("eth1", "datapath")]
