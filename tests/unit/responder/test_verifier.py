"""The responder's verifier (agent/responder/verifier.py) with a fake map and attacher: what it
finds missing it repairs through the reconciler's row status, and it fences only when a repair
fails or keeps being needed. Time is a FakeClock; the reconciler is played by ``reconcile``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest

from agent.responder.ops import ResponderOps
from agent.responder.verifier import DatapathVerifier
from agent.runtime import FakeClock
from common.tables import DEVICES, L2_ANNOUNCE, L2_FENCE
from common.tables.devices import Device
from common.tables.fence import Fence
from common.tables.l2_announce import L2AnnounceEntry, Origin
from statedb import Database, Status, StatusKind
from tests.unit.responder.test_ops import FakeAttacher, FakeGarp, FakeMap

VIP = "198.51.100.101"
ROW = L2AnnounceEntry(VIP, "eth0", (Origin("default", "web"),))


class BrokenMap(FakeMap):
    """A map whose writes fail, as when the map is full or the agent lost its rights."""

    broken = False

    def add_if_missing(self, ip: str, ifindex: int) -> bool:
        if self.broken:
            raise OSError(28, "No space left on device")
        return super().add_if_missing(ip, ifindex)


class Rig:
    def __init__(self) -> None:
        self.db = Database.open(None, [DEVICES, L2_ANNOUNCE, L2_FENCE])
        with self.db.write_txn(DEVICES) as txn:
            txn.upsert(DEVICES, Device(2, "eth0", hw_addr="02:00:00:00:00:02", selected=True))
            txn.commit()
        self.map = BrokenMap()
        self.attacher = FakeAttacher()
        self.garp = FakeGarp()
        self.ops = ResponderOps(self.db, self.map, self.attacher, self.garp)
        self.clock = FakeClock()
        self.verifier = DatapathVerifier(self.db, self.ops, self.attached_among, clock=self.clock)
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            txn.upsert(L2_ANNOUNCE, ROW)
            txn.commit()
        self.reconcile()

    def attached_among(self, ifindexes: Iterable[int]) -> set[int]:
        return set(ifindexes) & self.attacher.on

    def reconcile(self) -> None:
        """What the l2-responder reconciler does with Pending rows."""
        with self.db.read_txn() as r:
            pending = [x for x in r.all(L2_ANNOUNCE) if x.status.kind is StatusKind.PENDING]
        for row in pending:
            try:
                self.ops.update(row)
                status = Status(StatusKind.DONE)
            except Exception as e:
                status = Status(StatusKind.ERROR, str(e))
            with self.db.write_txn(L2_ANNOUNCE) as txn:
                txn.upsert(
                    L2_ANNOUNCE,
                    L2AnnounceEntry(row.ip, row.network_interface, row.origins, status),
                )
                txn.commit()

    def status(self) -> StatusKind:
        with self.db.read_txn() as r:
            row = r.get(L2_ANNOUNCE, VIP, "eth0")
        assert row is not None
        return row.status.kind

    def fences(self) -> list[Fence]:
        with self.db.read_txn() as r:
            return r.all(L2_FENCE)

    def tick(self, seconds: float = 1.0) -> None:
        self.clock.advance(seconds)
        self.verifier.verify_once()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.db.close()


def test_all_present_nothing_happens(rig: Rig) -> None:
    rig.tick()
    assert rig.status() is StatusKind.DONE
    assert rig.verifier.repairs == 0 and rig.fences() == []


def test_an_entry_deleted_behind_the_agents_back_is_restored_and_announced(rig: Rig) -> None:
    assert rig.garp.sent == [(VIP, 2)]
    rig.map.delete(VIP, 2)  # bpftool map delete ...
    rig.tick()
    assert rig.status() is StatusKind.PENDING  # handed back to the reconciler
    rig.reconcile()
    assert rig.map.keys() == [(VIP, 2)]
    assert rig.garp.sent == [(VIP, 2), (VIP, 2)]  # announced again, as any new entry
    rig.tick(5)
    assert rig.verifier.repairs == 1 and rig.fences() == []


def test_a_detached_program_is_attached_again(rig: Rig) -> None:
    rig.attacher.on.clear()  # tc filter del dev eth0 ingress ...
    rig.tick()
    assert rig.status() is StatusKind.PENDING
    rig.reconcile()
    assert rig.attacher.log == ["attach 2 020000000002", "attach 2 020000000002"]
    rig.tick(5)
    assert rig.fences() == []


def test_a_repair_that_fails_fences_the_entry_until_the_hold_down_ends(rig: Rig) -> None:
    rig.map.broken = True
    rig.map.delete(VIP, 2)
    rig.tick()
    rig.reconcile()
    assert rig.status() is StatusKind.ERROR
    rig.tick(1.0)
    assert rig.fences() == []  # within the repair grace: the reconciler retries
    rig.tick(1.0)
    (fence,) = rig.fences()
    assert (fence.interface, fence.ip, fence.kind, fence.reason) == (
        "eth0",
        VIP,
        "datapath",
        "datapath-failed",
    )
    assert fence.detail == (
        f"the responder entry {VIP}@eth0 could not be restored within 2s: "
        f"create {VIP}@2: [Errno 28] No space left on device"
    )
    assert fence.until == fence.since + 30
    # The lease is released: the row goes; the fence stays for its hold-down, then goes.
    with rig.db.write_txn(L2_ANNOUNCE) as txn:
        txn.delete(L2_ANNOUNCE, ROW)
        txn.commit()
    rig.tick(29)
    assert rig.fences() != []
    rig.tick(1)
    assert rig.fences() == []


def test_an_entry_that_keeps_going_missing_fences(rig: Rig) -> None:
    for _ in range(3):
        rig.map.delete(VIP, 2)
        rig.tick()
        rig.reconcile()
        rig.tick()
    assert rig.fences() == []  # three repairs within the window are tolerated
    rig.map.delete(VIP, 2)
    rig.tick()
    (fence,) = rig.fences()
    assert fence.detail.startswith(
        f"the responder entry {VIP}@eth0 went missing 4 times within 60s (last at "
    )
    assert fence.detail.endswith("): something keeps removing it")


def test_repairs_older_than_the_window_are_forgotten(rig: Rig) -> None:
    for _ in range(3):
        rig.map.delete(VIP, 2)
        rig.tick()
        rig.reconcile()
        rig.tick(30)
    rig.map.delete(VIP, 2)
    rig.tick()
    assert rig.fences() == []


def test_an_entry_withdrawn_while_being_repaired_is_not_fenced(rig: Rig) -> None:
    rig.map.broken = True
    rig.map.delete(VIP, 2)
    rig.tick()
    with rig.db.write_txn(L2_ANNOUNCE) as txn:
        txn.delete_key(L2_ANNOUNCE, VIP, "eth0")
        txn.commit()
    rig.tick(5)
    assert rig.fences() == []


def test_an_address_spelled_otherwise_in_the_row_is_not_missing(rig: Rig) -> None:
    # The map gives addresses back in canonical text; a row may spell one otherwise.
    row = L2AnnounceEntry("2001:db8:0::1", "eth0")
    with rig.db.write_txn(L2_ANNOUNCE) as txn:
        txn.upsert(L2_ANNOUNCE, row)
        txn.commit()
    rig.reconcile()
    with rig.db.read_txn() as r:
        programmed = r.get(L2_ANNOUNCE, row.ip, "eth0")
    assert programmed is not None and programmed.status.kind is StatusKind.DONE
    rig.map.counters[("2001:db8::1", 2)] = rig.map.counters.pop(("2001:db8:0::1", 2))
    rig.tick()
    assert rig.verifier.repairs == 0


def test_an_entry_that_cannot_be_programmed_at_all_fences(rig: Rig) -> None:
    # A new holder whose map refuses the entry from the start: the lease is held, nothing
    # answers. The reconciler retries; the node fences after the grace.
    rig.map.broken = True
    row = L2AnnounceEntry("198.51.100.102", "eth0", (Origin("default", "db"),))
    with rig.db.write_txn(L2_ANNOUNCE) as txn:
        txn.upsert(L2_ANNOUNCE, row)
        txn.commit()
    rig.reconcile()
    rig.tick()
    assert rig.fences() == [] and rig.verifier.repairs == 0
    rig.tick(1.0)
    assert rig.fences() == []  # within the grace
    rig.tick(1.0)
    (fence,) = rig.fences()
    assert fence.ip == "198.51.100.102"
    assert fence.detail == (
        "the responder entry 198.51.100.102@eth0 could not be programmed within 2s: "
        "create 198.51.100.102@2: [Errno 28] No space left on device"
    )


def test_a_row_in_error_whose_entry_is_there_is_left_alone(rig: Rig) -> None:
    # A failed gratuitous ARP puts the row in Error, but the entry answers: not a fence.
    with rig.db.write_txn(L2_ANNOUNCE) as txn:
        txn.upsert(
            L2_ANNOUNCE, L2AnnounceEntry(VIP, "eth0", ROW.origins, Status(StatusKind.ERROR, "garp"))
        )
        txn.commit()
    rig.tick(5)
    assert rig.fences() == [] and rig.verifier.repairs == 0
