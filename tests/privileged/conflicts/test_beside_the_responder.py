"""The detector beside the real ARP responder on the node's interface: the responder's own
answers are never a conflict, and a foreign gratuitous ARP *request* for the VIP, which the
responder sees at tc ingress, still reaches the detector (its tap sees frames before tc)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from agent.conflicts import ConflictMonitor, Settings
from agent.conflicts.wire import ArpSocket
from agent.runtime import RealClock
from bpf.garp import ARPOP_REQUEST, BROADCAST, arp_frame
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

    def open_socket(name: str) -> ArpSocket:
        with in_netns(lab.node):
            return ArpSocket(name)

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

        # A host announcing the VIP with a gratuitous request (sender = target = VIP).
        garp = arp_frame(
            eth_dst=BROADCAST, eth_src=lab.client_mac, op=ARPOP_REQUEST, sha=lab.client_mac,
            spa=VIP, tha=bytes(6), tpa=VIP,
        )  # fmt: skip
        port.drain()
        port.send(garp)
        _until("a conflicts row", lambda: bool(_rows(db)))  # kept for the quiet time, 3 probes
        (row,) = _rows(db)
        assert (row.ip, row.network_interface, row.foreign_mac, row.our_mac) == (
            VIP, "n0", lab.client_mac.hex(":"), lab.node_mac.hex(":"),
        )  # fmt: skip
        assert monitor.defences == 1
        # The responder took the request at tc ingress and answered it: a tap bound to ETH_P_ARP,
        # which sees frames after tc, would have missed it.
        frames = port.receive(1.0)
        assert any(f[6:12] == lab.node_mac and f[20:22] == b"\0\2" for f in frames)
    finally:
        monitor.stop()
        port.close()
        db.close()
