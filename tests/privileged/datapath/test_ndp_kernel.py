"""IPv6 with real kernels on both sides: the client resolves a VIP with ndisc6 and its own
Neighbour Discovery, the node joins the VIP's solicited-node group, and a takeover's unsolicited
advertisements move the client's neighbour entry."""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import time
from collections.abc import Callable

from bpf.garp import GarpSender
from bpf.mcast import SolicitedNodeGroups
from bpf.ndp import ALL_NODES_MAC, solicited_node, unsolicited_na_frame
from tests.privileged.datapath.lab import Lab, Loader, Port, in_netns, sh
from tests.privileged.datapath.nd_cases import VIP6, VIP6_2

StartLoader = Callable[..., Loader]
OLD_MAC = "02:00:00:00:00:99"


def _ndisc6(ns: str, ip: str) -> list[str]:
    """The link-layer addresses ndisc6 prints, every answer to one solicitation (-m waits for
    all of them, 1 s)."""
    out = sh("ip", "netns", "exec", ns, "ndisc6", "-m", "-n", "-r", "1", ip, "c0", check=False)
    return re.findall(r"Target link-layer address: ([0-9A-F:]{17})", out)


def _neigh(ns: str, ip: str) -> dict[str, object]:
    found = json.loads(sh("ip", "-n", ns, "-6", "-j", "neigh", "show", ip, "dev", "c0") or "[]")
    return found[0] if found else {}


def _maddrs(ns: str, dev: str) -> set[str]:
    out = sh("ip", "-n", ns, "-6", "maddr", "show", "dev", dev)
    return set(re.findall(r"inet6 ([0-9a-f:]+)", out))


def test_ndisc6_gets_exactly_one_answer_with_the_node_mac(
    lab6: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab6.node, bpf_root, "--attach", "n0")
    assert _ndisc6(lab6.client, VIP6) == []  # the control: nobody answers before the key
    loader.cmd(f"add {VIP6} {lab6.node_ifindex}")
    assert _ndisc6(lab6.client, VIP6) == [lab6.node_mac.hex(":").upper()]
    assert loader.cmd(f"get {VIP6} {lab6.node_ifindex}") == 1
    assert _ndisc6(lab6.client, VIP6_2) == []  # another address: not ours


def test_the_clients_own_resolution_stores_the_node_mac(
    lab6: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab6.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP6} {lab6.node_ifindex}")
    # The node has no route back, so the ping itself fails; it only makes the client resolve.
    sh("ip", "netns", "exec", lab6.client, "ping", "-6", "-c", "1", "-W", "1", VIP6, check=False)
    entry = _neigh(lab6.client, VIP6)
    assert entry.get("lladdr") == lab6.node_mac.hex(":"), entry
    assert loader.cmd(f"get {VIP6} {lab6.node_ifindex}") >= 1  # type: ignore[operator]


def test_unsolicited_advertisements_move_the_clients_entry_without_waiting_for_nud(
    lab6: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab6.node, bpf_root, "--attach", "n0")
    loader.cmd(f"add {VIP6} {lab6.node_ifindex}")
    # As if the former holder had been resolved a moment ago: a fresh, reachable entry.
    sh("ip", "-n", lab6.client, "-6", "neigh", "replace", VIP6, "lladdr", OLD_MAC, "dev", "c0",
       "nud", "reachable")  # fmt: skip
    assert _neigh(lab6.client, VIP6).get("lladdr") == OLD_MAC
    loader.cmd(f"garp {VIP6} {lab6.node_ifindex}")  # the takeover burst's first packet
    deadline = time.monotonic() + 5
    while _neigh(lab6.client, VIP6).get("lladdr") != lab6.node_mac.hex(":"):
        assert time.monotonic() < deadline, _neigh(lab6.client, VIP6)
        time.sleep(0.01)


def test_a_takeover_burst_is_three_unsolicited_advertisements_at_least_a_second_apart(
    lab6: Lab, client_port_factory: Callable[[Lab], Port]
) -> None:
    port = client_port_factory(lab6)
    with in_netns(lab6.node):
        sender = GarpSender(3, 0.5)  # the ARP side's default interval; IPv6 keeps 1 s
        sender.start()
        try:
            port.drain()
            sender.announce(VIP6, lab6.node_ifindex)
            got: list[tuple[float, bytes]] = []
            deadline = time.monotonic() + 10
            while len(got) < 3 and time.monotonic() < deadline:
                for f in port.receive(0.5, want=1):
                    if f[:6] == ALL_NODES_MAC and f[12:14] == b"\x86\xdd" and f[54] == 136:
                        got.append((time.monotonic(), f))
        finally:
            sender.stop()
    want = unsolicited_na_frame(lab6.node_mac, VIP6)
    assert [f for _t, f in got] == [want] * 3
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(got)]
    assert all(g >= 0.9 for g in gaps), gaps


def test_the_solicited_node_group_is_joined_with_a_report_while_held_and_left_after(
    lab6: Lab, client_port_factory: Callable[[Lab], Port]
) -> None:
    port = client_port_factory(lab6)
    group = str(ipaddress.IPv6Address(solicited_node(VIP6)))
    assert group == "ff02::1:ff00:10"
    assert group not in _maddrs(lab6.node, "n0")
    groups = SolicitedNodeGroups()
    try:
        port.drain()
        with in_netns(lab6.node):  # its sockets are opened at the first join
            assert groups.join(VIP6, lab6.node_ifindex) is True
        assert group in _maddrs(lab6.node, "n0")
        # An MLD report naming the group went out (to the MLDv2 routers' group, 33:33::16).
        reports = [
            f
            for f in port.receive(3.0)
            if f[:6] == b"\x33\x33\0\0\0\x16" and solicited_node(VIP6) in f
        ]
        assert reports, "no MLD report for the group"
        # A second VIP of the same group (the same low 24 bits) shares it: left with the last.
        other = "2001:db8:2::10"
        assert groups.join(other, lab6.node_ifindex) is False
        assert groups.leave(VIP6, lab6.node_ifindex) is False
        assert group in _maddrs(lab6.node, "n0")
        assert groups.leave(other, lab6.node_ifindex) is True
        assert group not in _maddrs(lab6.node, "n0")
        assert groups.join(VIP6, lab6.node_ifindex) is True  # on the socket opened before
        assert group in _maddrs(lab6.node, "n0")
    finally:
        groups.close()
    assert group not in _maddrs(lab6.node, "n0")  # closing leaves everything
