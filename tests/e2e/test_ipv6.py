"""IPv6 in the lab, on the real control plane: `l2lab up` makes each Service dual-stack (an IPv4 and
an IPv6 VIP in its load-balancer status), the holder answers Neighbour Solicitations from its
eBPF program, has joined the VIP's solicited-node group on eth0 (the others have not), and after
its agent is killed the client's neighbour entry moves to the new holder on the new holder's
unsolicited advertisements, without the client probing: one MAC per solicitation throughout.

The times are printed (docs/benchmarks.md), not asserted.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import select
import socket
import threading
import time
from collections import Counter

import pytest

from bpf.ndp import ICMP6_OFF, ND_NEIGHBOR_ADVERT, ns_frame, solicited_node
from lab import lab, netns
from lab.inventory import CLIENT_MAC, REFERENCE_TIMERS, LabState, node_mac
from tests.e2e import test_lab
from tests.e2e.lab_extras import holder_of, l2lab, until
from tests.e2e.test_lab import up

lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(240)

SERVICE = "service-1"
WATCH_IP6 = "2001:db8::77"  # on the LAN's prefix, held by no one
BURST_S = 2.5  # a takeover's unsolicited advertisements go out at 0, 1 and 2 s
_libc = ctypes.CDLL(None, use_errno=True)


def ndisc6(state: LabState, ip: str) -> list[str]:
    """The MACs ndisc6 prints in the client for one solicitation (-m: every answer in 1 s)."""
    out = lab.run_in(state, "client", ["ndisc6", "-m", "-n", "-r", "1", ip, "eth0"])
    return [m.lower() for m in re.findall(r"Target link-layer address: ([0-9A-F:]{17})", out)]


def neighbour6(state: LabState, ip: str) -> tuple[str, str]:
    """The client's neighbour entry for ``ip``: (MAC, state), ("", "") if it has none."""
    out = netns.ip("-6", "-j", "neigh", "show", ip, "dev", "eth0", netns=state.client_netns)
    found = json.loads(out or "[]")
    if not found:
        return "", ""
    return str(found[0].get("lladdr", "")), ",".join(found[0].get("state", []))


def maddr(state: LabState, node: str) -> set[str]:
    out = netns.ip("-6", "maddr", "show", "dev", "eth0", netns=state.netns_of(node))
    return set(re.findall(r"inet6 ([0-9a-f:]+)", out))


class NdWatch:
    """A Neighbour Solicitation for the VIP from the client every ``interval`` seconds, from a
    raw socket of the client's namespace; the MACs of the advertisements that answer each one."""

    def __init__(self, state: LabState, vip: str, interval: float = 0.02) -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{state.client_netns}", os.O_RDONLY)
        try:
            assert _libc.setns(target, 0x40000000) == 0
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
            self.sock.bind(("eth0", 0x86DD))
        finally:
            _libc.setns(own, 0x40000000)
            os.close(own)
            os.close(target)
        # From an address the client's kernel does not have: the answers, sent to it, are seen
        # here but never update the kernel's neighbour entry (which must move on its own).
        self.frame = ns_frame(
            eth_src=bytes.fromhex(CLIENT_MAC.replace(":", "")), target=vip, src=WATCH_IP6
        )
        self.vip = socket.inet_pton(socket.AF_INET6, vip)
        self.interval = interval
        self.answers: list[Counter[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sock.send(self.frame)
            got: Counter[str] = Counter()
            deadline = time.monotonic() + self.interval
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([self.sock], [], [], left)[0]:
                    break
                data, addr = self.sock.recvfrom(2048)
                if addr[2] == 4 or len(data) < ICMP6_OFF + 24:  # our own, or not an NA
                    continue
                if (
                    data[ICMP6_OFF] != ND_NEIGHBOR_ADVERT
                    or data[ICMP6_OFF + 8 : ICMP6_OFF + 24] != self.vip
                ):
                    continue
                if data[ICMP6_OFF + 4] & 0x40:  # solicited: an answer, not an announcement
                    got[data[6:12].hex(":")] += 1
            self.answers.append(got)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_a_dual_stack_service_is_answered_over_ndp_and_follows_its_lease(lab_name: str) -> None:
    state = up(lab_name, nodes=3, services=1)
    vip4, vip6 = state.vips()[SERVICE], state.vips6()[SERVICE]
    old = holder_of(state, SERVICE)
    old_mac = node_mac(state.node_states[old].index)

    # One lease, both families: the holder's table and BPF map have both VIPs.
    table = l2lab(lab_name, "exec", old, "--", "l2dbg", "statedb", "l2-announce")
    for ip in (vip4, vip6):
        assert re.search(rf"^{re.escape(ip)}\s+eth0\s*$", table, re.M), table
    listed = l2lab(lab_name, "exec", old, "--", "l2dbg", "bpf", "l2-responder", "list")
    assert re.search(rf"^{re.escape(vip6)}\s+eth0\s+\d+\s+\d+\s*$", listed, re.M), listed

    # The holder alone has joined the group; a solicitation gets exactly one answer.
    group = socket.inet_ntop(socket.AF_INET6, solicited_node(vip6))
    members = {n for n in state.node_states if group in maddr(state, n)}
    assert members == {old}, members
    time.sleep(BURST_S)  # the takeover's announcements are over: ndisc6 would print them too
    assert ndisc6(state, vip6) == [old_mac]
    ping = lab.run_in(state, "client", ["ping", "-6", "-c", "2", "-W", "1", vip6])
    assert "2 received" in ping, ping
    assert neighbour6(state, vip6)[0] == old_mac

    # Failover: the client's entry moves on the new holder's announcements, not on its own
    # probing (the entry is not resolved again: STALE, as an override leaves it).
    watch = NdWatch(state, vip6)
    try:
        l2lab(lab_name, "agent", "kill", old)
        killed = time.monotonic()
        moved = until(lambda: neighbour6(state, vip6)[0] not in ("", old_mac), "entry moved", 40)
        new = holder_of(state, SERVICE)
        new_mac = node_mac(state.node_states[new].index)
        mac, nud = neighbour6(state, vip6)
        print(f"client's IPv6 neighbour entry moved from {old} to {new} after {moved:.2f}s ({nud})")
        assert mac == new_mac and new != old
        assert nud == "STALE"  # set by an announcement; the client's own probe gives REACHABLE
        until(lambda: sum(1 for a in watch.answers if a) > 50, "answers from the new holder", 20)
    finally:
        watch.stop()
    assert all(len(a) <= 1 for a in watch.answers), [a for a in watch.answers if len(a) > 1][:3]
    answered = [next(iter(a)) for a in watch.answers if a]
    assert set(answered) <= {old_mac, new_mac}
    assert answered[-1] == new_mac
    print(f"{len(watch.answers)} solicitations over {time.monotonic() - killed:.1f}s, "
          f"{sum(1 for a in watch.answers if not a)} unanswered")  # fmt: skip

    time.sleep(BURST_S)
    assert ndisc6(state, vip6) == [new_mac]
    members = {n for n in state.node_states if group in maddr(state, n)}
    assert members == {new}, members  # the killed agent's sockets left it with the process


def test_a_restarted_holder_loses_no_solicitation(lab_name: str) -> None:
    """The holder's agent killed and started again within the renew deadline (reference timers):
    the pinned program keeps answering, and the group stays forwarded to it, throughout."""
    state = up(lab_name, nodes=2, timers=REFERENCE_TIMERS)
    vip6 = state.vips6()[SERVICE]
    holder = holder_of(state, SERVICE)
    mac = node_mac(state.node_states[holder].index)
    watch = NdWatch(state, vip6, interval=0.01)
    try:
        time.sleep(1.0)
        l2lab(lab_name, "agent", "kill", holder)
        l2lab(lab_name, "agent", "start", holder)
        time.sleep(3.0)
    finally:
        watch.stop()
    assert holder_of(state, SERVICE) == holder
    unanswered = sum(1 for a in watch.answers if not a)
    assert unanswered == 0, f"{unanswered} of {len(watch.answers)} solicitations unanswered"
    assert {m for a in watch.answers for m in a} == {mac}
    group = socket.inet_ntop(socket.AF_INET6, solicited_node(vip6))
    until(lambda: group in maddr(state, holder), "the restarted agent joined again", 10)
