"""The conflicts module's glue, without root: the tables it follows (what is announced where, the
interfaces' MACs, who holds each lease), the sockets it opens and closes as the pairs change, the
rows it writes, and an interface whose socket cannot be opened. Sockets are socketpairs standing
in for packet sockets: the test writes the frames the wire would bring."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from agent.conflicts import ConflictMonitor, Settings
from agent.conflicts.rules import ARPOP_REPLY
from agent.runtime import Level, RealClock
from bpf.garp import arp_frame
from common.tables import CONFLICTS, DEVICES, L2_ANNOUNCE, LEASES
from common.tables.conflicts import Conflict
from common.tables.devices import Device
from common.tables.l2_announce import L2AnnounceEntry, Origin
from common.tables.leases import Lease
from statedb import Database

VIP = "198.51.100.20"
OURS = bytes.fromhex("020000000011")
THEIRS = bytes.fromhex("020000000099")
LEASE = "cilium-l2announce-default-red"


class FakeSocket:
    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.wire, self._end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._end.setblocking(False)
        self.probes: list[str] = []
        self.defences: list[str] = []
        self.closed = False
        self.vips: set[str] = set()

    def fileno(self) -> int:
        return self._end.fileno()

    @property
    def mac(self) -> bytes:
        return OURS

    def receive(self, limit: int = 256) -> list[bytes]:
        frames = []
        for _ in range(limit):
            try:
                frames.append(self._end.recv(128))
            except BlockingIOError:
                break
        return frames

    def set_vips(self, vips: frozenset[str]) -> None:
        self.vips = set(vips)

    def send_probe(self, vip: str) -> None:
        self.probes.append(vip)

    def send_defence(self, vip: str) -> None:
        self.defences.append(vip)

    def close(self) -> None:
        self.closed = True
        self._end.close()
        self.wire.close()


def _until(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _reply() -> bytes:
    return arp_frame(
        eth_dst=OURS, eth_src=THEIRS, op=ARPOP_REPLY, sha=THEIRS, spa=VIP, tha=OURS,
        tpa="0.0.0.0",
    )  # fmt: skip


def test_follows_the_tables_opens_and_closes_sockets_and_writes_rows() -> None:
    opened: dict[str, FakeSocket] = {}
    refuse = {"eth1"}

    def open_socket(name: str) -> FakeSocket:
        if name in refuse:
            raise OSError(19, "No such device")
        opened[name] = FakeSocket(name)
        return opened[name]

    db = Database.open(None, [CONFLICTS, DEVICES, L2_ANNOUNCE, LEASES])
    with db.write_txn(DEVICES, LEASES) as txn:
        txn.upsert(DEVICES, Device(2, "eth0", hw_addr=OURS.hex(":")))
        txn.upsert(LEASES, Lease(LEASE, holder="node1"))
    monitor = ConflictMonitor(
        db,
        "node1",
        Settings(probe_interval=0.05, claim_grace=0.05),
        clock=RealClock(),
        open_socket=open_socket,  # type: ignore[arg-type]
    )

    def rows() -> list[Conflict]:
        with db.read_txn() as r:
            return r.all(CONFLICTS)

    monitor.start()
    try:
        # Nothing announced: no socket.
        time.sleep(0.1)
        assert opened == {}
        with db.write_txn(L2_ANNOUNCE) as txn:
            txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(VIP, "eth0", (Origin("default", "red"),)))
        _until("probes on eth0", lambda: "eth0" in opened and len(opened["eth0"].probes) >= 3)
        assert opened["eth0"].vips == {VIP}  # its kernel filter keeps only ARP from our VIPs
        opened["eth0"].wire.send(_reply())
        _until("a conflicts row", lambda: bool(rows()))
        assert [(r.foreign_mac, r.our_mac, r.services) for r in rows()] == [
            (THEIRS.hex(":"), OURS.hex(":"), ("default/red",))
        ]
        assert opened["eth0"].defences == [VIP]

        # An interface whose socket cannot be opened: Degraded, naming it, and retried.
        with db.write_txn(L2_ANNOUNCE) as txn:
            txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(VIP, "eth1", (Origin("default", "red"),)))
        _until("degraded", lambda: monitor.health.current().level is Level.DEGRADED)
        assert "eth1: cannot open an ARP socket" in monitor.health.current().message
        refuse.clear()
        _until("eth1 opened", lambda: "eth1" in opened)
        _until("OK again", lambda: monitor.health.current().level is Level.OK)

        # Withdrawn from eth0: its row goes and its socket is closed.
        with db.write_txn(L2_ANNOUNCE) as txn:
            txn.delete_key(L2_ANNOUNCE, VIP, "eth0")
        _until("the row cleared", lambda: not rows())
        _until("eth0's socket closed", lambda: opened["eth0"].closed)
        assert not opened["eth1"].closed

        # The lease now names another node: eth1's probes stop (we are the stale side).
        with db.write_txn(LEASES) as txn:
            txn.upsert(LEASES, Lease(LEASE, holder="node2"))
        _until(
            "the pair marked held elsewhere",
            lambda: [p.held_elsewhere for p in monitor.detector.pairs()] == [True],
        )
        before = len(opened["eth1"].probes)
        time.sleep(0.3)
        assert len(opened["eth1"].probes) == before
    finally:
        monitor.stop()
        db.close()
    assert all(s.closed for s in opened.values())


def test_a_socket_whose_link_went_down_is_forgotten_once_nothing_is_announced_there() -> None:
    """Link down on the announcing interface: the socket fails (ENETDOWN), the node hands the
    Service over, so nothing is watched there any more and the module is OK again (it once
    stayed Degraded, keeping the agent unready after the link came back)."""
    opened: dict[str, FakeSocket] = {}

    def open_socket(name: str) -> FakeSocket:
        opened[name] = FakeSocket(name)
        return opened[name]

    db = Database.open(None, [CONFLICTS, DEVICES, L2_ANNOUNCE, LEASES])
    with db.write_txn(DEVICES, LEASES, L2_ANNOUNCE) as txn:
        txn.upsert(DEVICES, Device(2, "eth0", hw_addr=OURS.hex(":")))
        txn.upsert(LEASES, Lease(LEASE, holder="node1"))
        txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(VIP, "eth0", (Origin("default", "red"),)))
    monitor = ConflictMonitor(
        db, "node1", Settings(probe_interval=0.05, claim_grace=0.05), clock=RealClock(),
        open_socket=open_socket,  # type: ignore[arg-type]
    )  # fmt: skip
    monitor.start()
    try:
        _until("eth0 opened", lambda: "eth0" in opened)
        down = opened["eth0"]

        def network_is_down(limit: int = 256) -> list[bytes]:
            raise OSError(100, "Network is down")

        down.receive = network_is_down  # type: ignore[method-assign]
        down.wire.send(_reply())  # something to read, which then fails
        _until("degraded", lambda: monitor.health.current().level is Level.DEGRADED)
        with db.write_txn(L2_ANNOUNCE) as txn:  # handed over: withdrawn
            txn.delete_key(L2_ANNOUNCE, VIP, "eth0")
        _until("OK again", lambda: monitor.health.current().level is Level.OK)
    finally:
        monitor.stop()
        db.close()
