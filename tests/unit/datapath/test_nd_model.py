"""The Neighbour Solicitation rules (bpf.nd_model), one by one: the spec the privileged tests hold
the program to."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from bpf.nd_model import expected_reply
from bpf.ndp import (
    ALL_NODES,
    ALL_NODES_MAC,
    ICMP6_OFF,
    checksum,
    ns_frame,
    solicited_node,
    unsolicited_na_frame,
)
from tests.privileged.datapath.nd_cases import (
    CLIENT_IP6,
    MULTICAST_TARGET,
    VIP6,
    VIP6_2,
    Case,
    cases,
)

NODE = bytes.fromhex("020000005301")
CLIENT = bytes.fromhex("020000005302")
IDX = 4
KEYS = {(ipaddress.IPv6Address(ip).packed, IDX) for ip in (VIP6, VIP6_2, MULTICAST_TARGET)}


def reply_to(frame: bytes, **kw: object) -> bytes | None:
    args: dict[str, object] = dict(ifindex=IDX, iface_mac=NODE, keys=KEYS, live=True)
    args.update(kw)
    return expected_reply(frame, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", cases(NODE, CLIENT), ids=lambda c: c.name)
def test_each_case_is_answered_or_not_as_listed(case: Case) -> None:
    assert (reply_to(case.frame) is not None) == case.answered


def test_a_solicitation_gets_a_solicited_overriding_advertisement_with_our_mac() -> None:
    frame = ns_frame(eth_src=CLIENT, target=VIP6, src=CLIENT_IP6)
    reply = reply_to(frame)
    assert reply is not None and len(reply) == 86
    vip, client = ipaddress.IPv6Address(VIP6).packed, ipaddress.IPv6Address(CLIENT_IP6).packed
    assert reply[:14] == CLIENT + NODE + b"\x86\xdd"
    assert reply[14:22] == bytes.fromhex("60000000") + struct.pack("!HBB", 32, 58, 255)
    assert reply[22:38] == vip and reply[38:54] == client
    icmp = reply[ICMP6_OFF:]
    assert icmp[0:2] == bytes([136, 0])
    assert icmp[4] == 0x60  # R=0, S=1, O=1
    assert icmp[8:24] == vip
    assert icmp[24:] == bytes([2, 1]) + NODE  # Target link-layer option
    assert checksum(vip, client, icmp) == 0


def test_the_source_link_layer_option_says_where_the_answer_goes() -> None:
    other = bytes.fromhex("020000000099")
    reply = reply_to(ns_frame(eth_src=CLIENT, target=VIP6, src=CLIENT_IP6, source_ll=other))
    assert reply is not None and reply[:6] == other


def test_a_duplicate_address_probe_is_answered_to_all_nodes_not_solicited() -> None:
    reply = reply_to(ns_frame(eth_src=CLIENT, target=VIP6))
    assert reply is not None
    assert reply[:6] == ALL_NODES_MAC
    assert reply[38:54] == ALL_NODES
    assert reply[ICMP6_OFF + 4] == 0x20  # S=0, O=1


def test_a_stale_stamp_answers_nothing() -> None:
    assert reply_to(ns_frame(eth_src=CLIENT, target=VIP6, src=CLIENT_IP6), live=False) is None


def test_another_interface_answers_nothing() -> None:
    assert reply_to(ns_frame(eth_src=CLIENT, target=VIP6, src=CLIENT_IP6), ifindex=IDX + 1) is None


def test_the_solicited_node_group_of_an_address() -> None:
    group = solicited_node("2001:db8::abcd:ef12")
    assert ipaddress.IPv6Address(group) == ipaddress.IPv6Address("ff02::1:ffcd:ef12")


def test_the_takeover_announcement_is_unsolicited_overriding_with_the_target_option() -> None:
    frame = unsolicited_na_frame(NODE, VIP6)
    vip = ipaddress.IPv6Address(VIP6).packed
    assert frame[:14] == ALL_NODES_MAC + NODE + b"\x86\xdd"
    assert frame[21] == 255 and frame[22:38] == vip and frame[38:54] == ALL_NODES
    icmp = frame[ICMP6_OFF:]
    assert icmp[0] == 136 and icmp[4] == 0x20 and icmp[8:24] == vip
    assert icmp[24:] == bytes([2, 1]) + NODE
    assert checksum(vip, ALL_NODES, icmp) == 0
