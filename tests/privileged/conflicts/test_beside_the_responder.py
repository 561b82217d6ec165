"""The detector beside the real ARP responder on the node's interface: the responder's own
answers are never a conflict; a foreign gratuitous ARP request for the VIP is taken and answered
by the responder at tc ingress, before the detector's ARP socket could see it; a foreign
gratuitous reply passes and is a conflict."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from agent.conflicts import ConflictMonitor, Settings
from agent.conflicts.wire import ArpSocket
from agent.runtime import RealClock
from bpf.garp import ARPOP_REPLY, ARPOP_REQUEST, BROADCAST, arp_frame
from common.tables import CONFLICTS, DEVICES, L2_ANNOUNCE, LEASES
from common.tables.conflicts import Conflict
from common.tables.devices import Device
from common.tables.l2_announce import L2AnnounceEntry, Origin
from common.tables.leases import Lease
from statedb import Database
from tests.privileged.datapath.lab import VIP, Lab, Loader, Port, arping, in_netns

NODE = "node1"


def _until(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _rows(db: Database) -> list[Conflict]:
    with db.read_txn() as r:
        return r.all(CONFLICTS)


def test_our_answers_are_not_conflicts_and_a_foreign_gratuitous_request_is_seen(
    lab: Lab, bpf_root: str, loaders: Callable[..., Loader]
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0")
    assert loader.cmd(f"add {VIP} {lab.node_ifindex}") is True

    sockets: list[ArpSocket] = []

    def open_socket(name: str) -> ArpSocket:
        with in_netns(lab.node):
            sockets.append(ArpSocket(name))
            return sockets[-1]

    db = Database.open(None, [CONFLICTS, DEVICES, L2_ANNOUNCE, LEASES])
    with db.write_txn(DEVICES, L2_ANNOUNCE, LEASES) as txn:
        txn.upsert(DEVICES, Device(lab.node_ifindex, "n0", hw_addr=lab.node_mac.hex(":")))
        txn.upsert(LEASES, Lease("cilium-l2announce-default-red", holder=NODE))
        txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(VIP, "n0", (Origin("default", "red"),)))
    monitor = ConflictMonitor(
        db,
        NODE,
        Settings(probe_interval=0.5, claim_grace=0.1),
        clock=RealClock(),
        open_socket=open_socket,
    )
    port = Port(lab.client, "c0")
    monitor.start()
    try:
        # The client asks, the responder answers from the node's MAC, many times over, while
        # the detector probes; nothing of it is a conflict.
        result = arping(lab.client, VIP, 20)
        assert result.received == 20 and result.macs == {lab.node_mac.hex(":")}
        _until("four probes", lambda: monitor.probes >= 4)
        assert _rows(db) == []
        # The client's requests (sender IP its own) never left the kernel: the socket's filter
        # keeps only ARP whose sender IP is one of the VIPs.
        assert [s.received for s in sockets] == [0]

        # A host announcing the VIP with a gratuitous request (sender = target = VIP): the
        # responder takes it at tc ingress and answers it, so the detector's socket, which sees
        # ARP after tc, never gets it (such a host is found by the probe it answers).
        def gratuitous(op: int) -> bytes:
            return arp_frame(
                eth_dst=BROADCAST, eth_src=lab.client_mac, op=op, sha=lab.client_mac,
                spa=VIP, tha=lab.client_mac, tpa=VIP,
            )  # fmt: skip

        port.drain()
        port.send(gratuitous(ARPOP_REQUEST))
        frames = port.receive(1.0)
        assert any(f[6:12] == lab.node_mac and f[20:22] == b"\0\2" for f in frames)
        assert _rows(db) == []

        # Its gratuitous reply passes the responder and is a conflict.
        port.send(gratuitous(ARPOP_REPLY))
        _until("a conflicts row", lambda: bool(_rows(db)))  # kept for the quiet time, 3 probes
        (row,) = _rows(db)
        assert (row.ip, row.network_interface, row.foreign_mac, row.our_mac) == (
            VIP, "n0", lab.client_mac.hex(":"), lab.node_mac.hex(":"),
        )  # fmt: skip
        assert monitor.defences == 1
        assert sockets[0].received == 1
    finally:
        monitor.stop()
        port.close()
        db.close()
