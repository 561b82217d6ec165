"""The responder's verifier against the real kernel: the agent's datapath, responder operations
and reconciler in a node namespace, a client that ARPs. Behind the agent's back, ``bpftool map
delete`` removes the VIP's entry and ``tc filter del`` our filter: the verifier finds each (the
client's ARP is unanswered meanwhile, the positive control), the reconciler restores it and the
client is answered again. When the repair cannot work (another program now sees ARP on the
interface, so ours is refused there), the node fences the interface in ``l2-fence``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from agent.responder.ops import ResponderOps
from agent.responder.verifier import DatapathVerifier
from agent.runtime import RealClock
from bpf import attach as tc
from bpf.datapath import Datapath
from bpf.maps import RESPONDER_MAP_NAME, pin_path
from common.tables import DEVICES, L2_ANNOUNCE, L2_FENCE
from common.tables.devices import Device
from common.tables.fence import Fence
from common.tables.l2_announce import L2AnnounceEntry, Origin
from statedb import Database, StatusKind
from statedb.reconciler import Config
from tests.privileged.datapath import foreign
from tests.privileged.datapath.lab import VIP, Lab, arping, in_netns, sh
from tests.reconciler_job import JobReconciler
from tests.unit.responder.test_ops import FakeGarp


@dataclass
class Node:
    """The agent's datapath side of one node, running in the lab's node namespace."""

    lab: Lab
    db: Database
    dp: Datapath
    reconciler: JobReconciler[L2AnnounceEntry]
    verifier: DatapathVerifier

    def status(self) -> StatusKind:
        with self.db.read_txn() as r:
            row = r.get(L2_ANNOUNCE, VIP, "n0")
        assert row is not None
        return row.status.kind

    def fences(self) -> list[Fence]:
        with self.db.read_txn() as r:
            return r.all(L2_FENCE)

    def answered(self) -> int:
        return arping(self.lab.client, VIP, 2).received

    def filters(self) -> str:
        return sh(
            "ip", "netns", "exec", self.lab.node, "tc", "filter", "show", "dev", "n0", "ingress"
        )


def until(pred: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"{what}: not within {timeout}s"
        time.sleep(0.02)


@contextmanager
def running_node(lab: Lab, bpf_root: str, expect: StatusKind = StatusKind.DONE) -> Iterator[Node]:
    """Everything runs with the node's namespace (threads started here inherit it); every thread
    is stopped and our filters and pins removed before the block's end, also on failure."""
    with in_netns(lab.node):
        db = Database.open(None, [DEVICES, L2_ANNOUNCE, L2_FENCE])
        with db.write_txn(DEVICES) as txn:
            mac = lab.node_mac.hex(":")
            txn.upsert(DEVICES, Device(lab.node_ifindex, "n0", hw_addr=mac, selected=True))
            txn.commit()
        dp = Datapath(bpf_root)
        dp.start()
        ops = ResponderOps(db, dp.responder, dp, FakeGarp())
        rec: JobReconciler[L2AnnounceEntry] = JobReconciler(
            db,
            L2_ANNOUNCE,
            ops,
            Config(retry_min=0.05, retry_max=0.2),
            clock=RealClock(),
            name="l2-responder",
        )
        # A short repair grace: the test waits for the fence, not the agent's 2 s.
        verifier = DatapathVerifier(db, ops, tc.attached_among, repair_grace=0.5)
        try:
            dp.start_stamping()
            rec.start()
            with db.write_txn(L2_ANNOUNCE) as txn:
                txn.register_initializer(L2_ANNOUNCE, "test")
                txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(VIP, "n0", (Origin("default", "web"),)))
                txn.initializer_done(L2_ANNOUNCE, "test")
                txn.commit()
            node = Node(lab, db, dp, rec, verifier)
            until(lambda: node.status() is expect, f"the entry's row {expect.value}")
            yield node
        finally:
            rec.stop(5)
            dp.shutdown(detach=True)
            db.close()


def test_an_entry_deleted_behind_the_agents_back_is_found_and_restored(
    lab: Lab, bpf_root: str
) -> None:
    with running_node(lab, bpf_root) as node:
        assert node.answered() == 2
        node.verifier.verify_once()
        assert node.verifier.repairs == 0

        key = socket.inet_aton(VIP) + lab.node_ifindex.to_bytes(4, "little")
        path = pin_path(bpf_root, RESPONDER_MAP_NAME)
        sh("bpftool", "map", "delete", "pinned", path, "key", "hex", *(f"{b:02x}" for b in key))
        assert node.answered() == 0  # the gap a lost entry leaves: nobody answers

        node.verifier.verify_once()
        assert node.verifier.repairs == 1
        until(lambda: node.status() is StatusKind.DONE, "the entry restored")
        assert node.answered() == 2
        node.verifier.verify_once()
        assert node.verifier.repairs == 1 and node.fences() == []


def test_a_detached_filter_is_found_and_attached_again(lab: Lab, bpf_root: str) -> None:
    with running_node(lab, bpf_root) as node:
        assert tc.FILTER_NAME in node.filters()
        sh("ip", "netns", "exec", lab.node, "tc", "filter", "del", "dev", "n0", "ingress",
           "pref", str(tc.FILTER_PRIO))  # fmt: skip
        assert node.answered() == 0

        node.verifier.verify_once()
        until(lambda: node.status() is StatusKind.DONE, "the filter attached again")
        assert node.answered() == 2
        node.verifier.verify_once()
        assert node.verifier.repairs == 1 and node.fences() == []


def test_a_repair_refused_by_another_program_fences_the_interface(lab: Lab, bpf_root: str) -> None:
    with running_node(lab, bpf_root) as node:
        # Someone else's program comes to see ARP on n0, and our filter goes.
        other = foreign.tc_filter(lab.node, "n0", name="someone_else", prio=5, handle=7)
        sh("ip", "netns", "exec", lab.node, "tc", "filter", "del", "dev", "n0", "ingress",
           "pref", str(tc.FILTER_PRIO))  # fmt: skip
        node.verifier.verify_once()
        until(lambda: node.status() is StatusKind.ERROR, "the repair refused")
        time.sleep(0.5)  # the repair grace
        node.verifier.verify_once()
        (fence,) = node.fences()
        assert (fence.interface, fence.ip, fence.kind, fence.reason) == (
            "n0",
            "",
            "datapath",
            "datapath-failed",
        )
        assert fence.detail.startswith(
            "the program on n0 could not be restored within 0.5s: not answering ARP or NDP on n0: "
            f"another BPF program on its ingress sees ARP or IPv6 (someone_else (program id {other}"
        ), fence.detail


@pytest.fixture(autouse=True)
def _own_namespaces_only(lab: Lab) -> None:
    # The lab fixture's namespaces are removed after the test (tests/privileged/conftest.py).
    assert lab.node.startswith("l2t-")


def test_an_entry_never_programmed_fences_the_interface(lab: Lab, bpf_root: str) -> None:
    # The new holder cannot put its program on the interface at all (another program sees ARP
    # there): the lease is held and nothing answers, unless the node lets go.
    other = foreign.tc_filter(lab.node, "n0", name="someone_else", prio=5, handle=7)
    with running_node(lab, bpf_root, expect=StatusKind.ERROR) as node:
        assert node.answered() == 0
        node.verifier.verify_once()
        assert node.fences() == []  # the reconciler retries for the grace
        time.sleep(0.5)
        node.verifier.verify_once()
        (fence,) = node.fences()
        assert (fence.interface, fence.ip, fence.reason) == ("n0", "", "datapath-failed")
        assert fence.detail.startswith(
            "the program on n0 could not be programmed within 0.5s: not answering ARP or NDP on "
            f"n0: another BPF program on its ingress sees ARP or IPv6 (someone_else (program id "
            f"{other}"
        ), fence.detail
        assert node.verifier.repairs == 0
