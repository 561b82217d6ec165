"""The conflict detector's rules, with virtual time: what counts as another host answering for
our VIP, when we probe and defend, when a conflict is over, and why our own cluster's other nodes
are not foreign."""

from __future__ import annotations

from collections.abc import Sequence

from agent.conflicts.rules import (
    ARPOP_REPLY,
    ARPOP_REQUEST,
    ArpPacket,
    Clean,
    Cleared,
    Defend,
    Detector,
    Heard,
    Pair,
    Probe,
    Raised,
    Settings,
    Updated,
    announced_pairs,
    parse_arp,
)
from agent.conflicts.wire import ETH_P_ARP, MAX_FILTERED_VIPS, SNAP_LEN, arp_filter
from bpf.garp import BROADCAST, arp_frame, garp_frame

VIP = "198.51.100.20"
OURS = "02:00:00:00:00:11"
THEIRS = "02:00:00:00:00:99"
PEER = "02:00:00:00:00:12"  # another node of the cluster
PAIR = Pair(VIP, "eth0", OURS, ("default/red",))
T0 = 1000.0
WALL = 1_700_000_000.0


def reply(sha: str = THEIRS, spa: str = VIP, op: int = ARPOP_REPLY) -> ArpPacket:
    """What a host owning ``spa`` sends back to our probe."""
    return ArpPacket(op, sha, spa, OURS, "0.0.0.0")


def kinds(actions: Sequence[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def claimed(settings: Settings | None = None, at: float = T0) -> Detector:
    d = Detector(settings)
    d.watch([PAIR], at, WALL)
    return d


def after_grace(d: Detector, at: float = T0 + 1.0) -> None:
    d.tick(at, WALL + (at - T0))


def test_a_pair_is_probed_at_claim_at_the_end_of_the_grace_then_every_interval() -> None:
    d = Detector(Settings(probe_interval=1.0, claim_grace=1.0))
    assert d.watch([PAIR], T0, WALL) == [Probe(VIP, "eth0")]
    assert d.next_deadline() == T0 + 1.0
    assert d.tick(T0 + 0.5, WALL) == []
    assert d.tick(T0 + 1.0, WALL) == [Probe(VIP, "eth0")]
    assert d.next_deadline() == T0 + 2.0
    assert d.tick(T0 + 2.0, WALL) == [Probe(VIP, "eth0")]


def test_with_probing_off_only_the_claim_and_grace_probes_go_out() -> None:
    d = Detector(Settings(probe_interval=0))
    assert kinds(d.watch([PAIR], T0, WALL)) == ["Probe"]
    assert kinds(d.tick(T0 + 1.0, WALL)) == ["Probe"]
    assert [a for a in d.tick(T0 + 500, WALL) if isinstance(a, Probe)] == []


def test_a_foreign_reply_after_the_grace_raises_a_conflict_and_defends_once() -> None:
    d = claimed()
    after_grace(d)
    actions = d.packet("eth0", reply(), T0 + 1.2, WALL + 1.2)
    assert kinds(actions) == ["Heard", "Raised", "Defend"]
    raised = actions[1]
    assert isinstance(raised, Raised)
    row = raised.row
    assert (row.ip, row.network_interface, row.foreign_mac, row.our_mac) == (
        VIP, "eth0", THEIRS, OURS,
    )  # fmt: skip
    assert row.services == ("default/red",)
    assert (row.first_seen, row.last_seen, row.packets) == (WALL + 1.2, WALL + 1.2, 1)
    assert (row.defended_at, row.defences) == (WALL + 1.2, 1)
    assert [c.foreign_mac for c in d.conflicts()] == [THEIRS]


def test_gratuitous_arp_and_requests_from_the_foreign_host_count_too() -> None:
    d = claimed()
    after_grace(d)
    garp = ArpPacket(ARPOP_REPLY, THEIRS, VIP, THEIRS, VIP)
    assert "Raised" in kinds(d.packet("eth0", garp, T0 + 1.5, WALL))
    d2 = claimed()
    after_grace(d2)
    own_request = ArpPacket(ARPOP_REQUEST, THEIRS, VIP, "00:00:00:00:00:00", "198.51.100.1")
    assert "Raised" in kinds(d2.packet("eth0", own_request, T0 + 1.5, WALL))


def test_our_own_mac_another_ip_another_interface_and_foreign_probes_are_not_conflicts() -> None:
    d = claimed()
    after_grace(d)
    assert d.packet("eth0", reply(sha=OURS), T0 + 2, WALL) == []
    assert d.packet("eth0", reply(spa="198.51.100.21"), T0 + 2, WALL) == []
    assert d.packet("eth1", reply(), T0 + 2, WALL) == []
    # Another host probing for the VIP (sender IP 0): our datapath's answer tells it.
    probe = ArpPacket(ARPOP_REQUEST, THEIRS, "0.0.0.0", "00:00:00:00:00:00", VIP)
    assert d.packet("eth0", probe, T0 + 2, WALL) == []
    assert d.conflicts() == []


def test_a_mac_heard_only_during_the_claim_grace_is_the_old_holders_tail() -> None:
    d = claimed()
    assert d.packet("eth0", reply(sha=PEER), T0 + 0.1, WALL + 0.1) == []
    after_grace(d)
    # Silent after the grace (its datapath stopped): never a conflict, and the Services hear so.
    actions = d.tick(T0 + 4.0, WALL + 4.0)
    assert [a for a in actions if isinstance(a, Clean)] == [Clean(PAIR)]
    assert d.conflicts() == []


def test_a_mac_heard_in_the_grace_and_again_after_it_is_a_conflict_since_it_was_first_heard() -> (
    None
):
    d = claimed()
    d.packet("eth0", reply(), T0 + 0.1, WALL + 0.1)
    after_grace(d)
    actions = d.packet("eth0", reply(), T0 + 1.1, WALL + 1.1)
    raised = [a for a in actions if isinstance(a, Raised)]
    assert raised and raised[0].row.first_seen == WALL + 0.1


def test_while_the_lease_names_another_node_we_are_the_stale_side_and_judge_nothing() -> None:
    d = Detector()
    stale = Pair(VIP, "eth0", OURS, ("default/red",), held_elsewhere=True)
    assert d.watch([stale], T0, WALL) == []
    assert d.packet("eth0", reply(sha=PEER), T0 + 5, WALL) == []
    assert d.tick(T0 + 5, WALL) == []
    assert d.next_deadline() is None
    # Retaken: a claim again, with its probe and grace.
    assert d.watch([PAIR], T0 + 10, WALL) == [Probe(VIP, "eth0")]
    assert d.packet("eth0", reply(sha=PEER), T0 + 10.5, WALL) == []


def test_defence_at_most_once_per_interval_and_three_times_per_episode() -> None:
    d = claimed(Settings(probe_interval=1.0, defend_interval=10.0, max_defences=3))
    after_grace(d)
    defended = []
    t = T0 + 1.0
    while t < T0 + 60:
        for a in d.packet("eth0", reply(), t, WALL + (t - T0)):
            if isinstance(a, Defend):
                defended.append(round(t - T0, 1))
        d.tick(t, WALL)
        t += 0.5
    assert defended == [1.0, 11.0, 21.0]
    rows = d.conflicts()
    assert rows[0].defences == 3


def test_a_silent_foreign_host_clears_after_three_probe_intervals() -> None:
    d = claimed(Settings(probe_interval=1.0))
    after_grace(d)
    d.packet("eth0", reply(), T0 + 1.2, WALL + 1.2)
    assert d.next_deadline() is not None
    assert not [a for a in d.tick(T0 + 4.1, WALL) if isinstance(a, Cleared)]
    cleared = [a for a in d.tick(T0 + 4.2, WALL) if isinstance(a, Cleared)]
    assert [c.row.foreign_mac for c in cleared] == [THEIRS]
    assert cleared[0].why == "not heard for 3s"
    assert d.conflicts() == []
    # A new episode defends again.
    assert "Defend" in kinds(d.packet("eth0", reply(), T0 + 30, WALL))


def test_withdrawing_the_pair_clears_its_conflicts_and_stops_probing() -> None:
    d = claimed()
    after_grace(d)
    d.packet("eth0", reply(), T0 + 1.2, WALL)
    actions = d.watch([], T0 + 2, WALL)
    assert [(type(a).__name__, getattr(a, "why", "")) for a in actions] == [
        ("Cleared", "this node no longer announces it there")
    ]
    assert d.next_deadline() is None


def test_the_row_is_rewritten_at_most_once_per_refresh() -> None:
    d = claimed(Settings(refresh=1.0, max_defences=0))
    after_grace(d)
    d.packet("eth0", reply(), T0 + 1.0, WALL)
    updates = 0
    heard = 0
    for i in range(1, 20):  # 19 packets in 0.95 s
        for a in d.packet("eth0", reply(), T0 + 1.0 + i * 0.05, WALL):
            updates += isinstance(a, Updated)
            heard += isinstance(a, Heard)
    assert heard == 19 and updates == 0
    (upd,) = [a for a in d.tick(T0 + 2.0, WALL + 1) if isinstance(a, Updated)]
    assert upd.row.packets == 20


def test_the_deadline_is_never_in_the_past_after_a_tick() -> None:
    d = claimed()
    for t in (T0, T0 + 0.3, T0 + 1.0, T0 + 1.7, T0 + 4.5, T0 + 9.0):
        d.packet("eth0", reply(), t, WALL)
        d.tick(t, WALL)
        deadline = d.next_deadline()
        assert deadline is None or deadline > t


def test_parse_arp_reads_the_frames_we_send_and_rejects_others() -> None:
    mac = bytes.fromhex("020000000011")
    pkt = parse_arp(garp_frame(mac, VIP))
    assert pkt == ArpPacket(ARPOP_REPLY, OURS, VIP, OURS, VIP)
    req = arp_frame(
        eth_dst=BROADCAST, eth_src=mac, op=ARPOP_REQUEST, sha=mac, spa="0.0.0.0",
        tha=bytes(6), tpa=VIP,
    )  # fmt: skip
    assert parse_arp(req) == ArpPacket(ARPOP_REQUEST, OURS, "0.0.0.0", "00:00:00:00:00:00", VIP)
    ipv4 = bytearray(garp_frame(mac, VIP))
    ipv4[12:14] = b"\x08\x00"
    assert parse_arp(bytes(ipv4)) is None
    assert parse_arp(garp_frame(mac, VIP)[:30]) is None


def test_announced_pairs_marks_services_whose_lease_names_another_node() -> None:
    entries = [
        (VIP, "eth0", ("default/red",)),
        ("198.51.100.21", "eth0", ("default/blue",)),
        ("2001:db8::1", "eth0", ("default/red",)),
        ("198.51.100.22", "eth0", ()),
    ]
    holders = {"default/red": "node1", "default/blue": "node2"}
    pairs = announced_pairs(entries, {"eth0": OURS}, holders, "node1")
    assert pairs == [
        Pair(VIP, "eth0", OURS, ("default/red",), held_elsewhere=False),
        Pair("198.51.100.21", "eth0", OURS, ("default/blue",), held_elsewhere=True),
    ]


def test_at_most_four_foreign_macs_per_pair_get_a_row_the_rest_are_only_counted() -> None:
    d = claimed()
    after_grace(d)
    heard = raised = 0
    for i in range(20):
        for a in d.packet("eth0", reply(sha=f"02:00:00:00:01:{i:02x}"), T0 + 2, WALL):
            heard += isinstance(a, Heard)
            raised += isinstance(a, Raised)
    assert (heard, raised) == (20, 4)
    assert len(d.conflicts()) == 4


def test_the_socket_filter_keeps_arp_from_our_vips_only() -> None:
    def run(program: list[tuple[int, int, int, int]], frame: bytes) -> int:
        """A tiny interpreter of the four instructions the filter uses."""
        acc, pc = 0, 0
        while True:
            code, jt, jf, k = program[pc]
            if code == 0x28:
                acc = int.from_bytes(frame[k : k + 2], "big")
            elif code == 0x20:
                acc = int.from_bytes(frame[k : k + 4], "big")
            elif code == 0x15:
                pc += jt if acc == k else jf
            elif code == 0x06:
                return k
            pc += 1

    mac = bytes.fromhex("020000000099")
    ours = garp_frame(mac, VIP)
    other = garp_frame(mac, "198.51.100.99")
    not_arp = bytearray(ours)
    not_arp[12:14] = b"\x08\x00"
    program = arp_filter([VIP, "198.51.100.21"])
    assert [run(program, f) for f in (ours, other, bytes(not_arp))] == [SNAP_LEN, 0, 0]
    assert run(arp_filter([]), ours) == 0
    many = arp_filter(f"10.0.{i // 256}.{i % 256}" for i in range(MAX_FILTERED_VIPS + 1))
    assert len(many) == 4 and run(many, other) == SNAP_LEN and ETH_P_ARP == 0x0806
    assert len(arp_filter(f"10.0.{i // 256}.{i % 256}" for i in range(MAX_FILTERED_VIPS))) <= 4096
