"""The conflict detector on a real wire: a node namespace announcing a VIP and a foreign host
(a plain namespace with the VIP as a static address) on one veth pair. The foreign kernel
answers our probes; the detector must name its MAC in the conflicts table, defend once, and clear
the row once the address is gone. Namespaces are the test's own, removed even on failure."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from agent.conflicts import ConflictMonitor, Settings
from agent.conflicts.monitor import Reports
from agent.conflicts.rules import Pair
from agent.conflicts.wire import ArpSocket
from agent.runtime import Level, RealClock
from common.tables import CONFLICTS, DEVICES, L2_ANNOUNCE, LEASES
from common.tables.conflicts import Conflict
from common.tables.devices import Device
from common.tables.l2_announce import L2AnnounceEntry, Origin
from common.tables.leases import Lease
from statedb import Database
from tests.privileged.datapath.lab import in_netns, link_info, sh

VIP = "198.51.100.20"
NODE = "node1"


class Recorded(Reports):
    def __init__(self) -> None:
        self.raised_rows: list[Conflict] = []
        self.cleared_rows: list[tuple[Conflict, str]] = []
        self.clean_pairs: list[Pair] = []

    def raised(self, row: Conflict) -> None:
        self.raised_rows.append(row)

    def cleared(self, row: Conflict, why: str) -> None:
        self.cleared_rows.append((row, why))

    def clean(self, pair: Pair) -> None:
        self.clean_pairs.append(pair)


def _until(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _rows(db: Database) -> list[Conflict]:
    with db.read_txn() as r:
        return r.all(CONFLICTS)


def test_a_foreign_host_with_the_vip_is_found_defended_and_cleared_when_it_goes(
    make_netns: Callable[[], str],
) -> None:
    node, foreign = make_netns(), make_netns()
    for ns in (node, foreign):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    sh("ip", "-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
       "netns", foreign)  # fmt: skip
    for ns in (node, foreign):
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", foreign, "addr", "add", f"{VIP}/24", "dev", "eth0")
    node_ifindex, node_mac = link_info(node, "eth0")
    _, foreign_mac = link_info(foreign, "eth0")
    our, theirs = node_mac.hex(":"), foreign_mac.hex(":")

    def open_socket(name: str) -> ArpSocket:
        with in_netns(node):
            return ArpSocket(name)

    db = Database.open(None, [CONFLICTS, DEVICES, L2_ANNOUNCE, LEASES])
    with db.write_txn(DEVICES, L2_ANNOUNCE, LEASES) as txn:
        txn.upsert(DEVICES, Device(node_ifindex, "eth0", hw_addr=our, selected=True))
        txn.upsert(LEASES, Lease("cilium-l2announce-default-red", holder=NODE))
        txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(VIP, "eth0", (Origin("default", "red"),)))
    reports = Recorded()
    monitor = ConflictMonitor(
        db,
        NODE,
        Settings(probe_interval=0.2, claim_grace=0.2),
        reports=reports,
        clock=RealClock(),
        open_socket=open_socket,
    )
    monitor.start()
    try:
        _until("a conflicts row", lambda: bool(_rows(db)))
        (row,) = _rows(db)
        assert (row.ip, row.network_interface, row.foreign_mac, row.our_mac) == (
            VIP, "eth0", theirs, our,
        )  # fmt: skip
        assert row.services == ("default/red",)
        assert row.first_seen > 0 and row.packets >= 1
        assert [r.foreign_mac for r in reports.raised_rows] == [theirs]
        assert monitor.defences == 1 and row.defended_at > 0
        assert monitor.probes >= 2

        sh("ip", "-n", foreign, "addr", "del", f"{VIP}/24", "dev", "eth0")
        _until("the row to be cleared", lambda: not _rows(db))
        assert [(r.foreign_mac, why) for r, why in reports.cleared_rows] == [
            (theirs, "not heard for 0.6s")
        ]
        assert monitor.health.current().level is Level.OK, monitor.health.current()
    finally:
        monitor.stop()
        db.close()
