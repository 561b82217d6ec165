"""The responder's rules (bpf.arp_model), one by one: the spec the fuzz test holds the program to."""

from __future__ import annotations

import socket
import struct

import pytest

from bpf.arp_model import expected_reply
from bpf.garp import ARPOP_REPLY, ARPOP_REQUEST, BROADCAST, arp_frame

NODE = bytes.fromhex("020000005301")
CLIENT = bytes.fromhex("020000005302")
VIP = "198.51.100.10"
IDX = 4
KEYS = {(socket.inet_aton(VIP), IDX)}


def request(**kw: object) -> bytes:
    args: dict[str, object] = dict(
        eth_dst=BROADCAST,
        eth_src=CLIENT,
        op=ARPOP_REQUEST,
        sha=CLIENT,
        spa="198.51.100.2",
        tha=bytes(6),
        tpa=VIP,
    )
    args.update(kw)
    return arp_frame(**args)  # type: ignore[arg-type]


def reply_to(frame: bytes, **kw: object) -> bytes | None:
    args: dict[str, object] = dict(ifindex=IDX, iface_mac=NODE, keys=KEYS, live=True)
    args.update(kw)
    return expected_reply(frame, **args)  # type: ignore[arg-type]


def put(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


def test_a_broadcast_request_is_answered_by_rewriting_it() -> None:
    frame = request()
    assert reply_to(frame) == (
        CLIENT
        + NODE
        + bytes.fromhex("08060001080006040002")
        + NODE
        + socket.inet_aton(VIP)
        + CLIENT
        + socket.inet_aton("198.51.100.2")
    ) + bytes(18)


def test_a_request_unicast_to_our_mac_is_answered() -> None:
    assert reply_to(request(eth_dst=NODE)) is not None


def test_padding_and_length_are_kept() -> None:
    frame = request(pad_to=42) + b"\xaa\xbb"
    out = reply_to(frame)
    assert out is not None and len(out) == 44 and out.endswith(b"\xaa\xbb")


def test_reply_goes_to_the_ethernet_source_not_to_sha() -> None:
    other = bytes.fromhex("020000005309")
    out = reply_to(request(sha=other))
    assert out is not None and out[:6] == CLIENT and out[32:38] == CLIENT


def test_probe_and_gratuitous_requests_are_answered_like_the_reference() -> None:
    assert reply_to(request(spa="0.0.0.0")) is not None
    assert reply_to(request(spa=VIP)) is not None


@pytest.mark.parametrize(
    ("why", "frame"),
    [
        ("truncated", request()[:41]),
        ("bare Ethernet header", request()[:14]),
        ("not ARP", put(request(), 12, b"\x08\x00")),
        ("VLAN tagged", request()[:12] + b"\x81\x00\x00\x05" + request()[12:]),
        ("a reply", request(op=ARPOP_REPLY)),
        ("op 3", request(op=3)),
        ("hrd not Ethernet", put(request(), 14, struct.pack("!H", 6))),
        ("pro not IPv4", put(request(), 16, struct.pack("!H", 0x86DD))),
        ("hln not 6", put(request(), 18, b"\x08")),
        ("pln not 4", put(request(), 19, b"\x10")),
        ("from our own MAC", request(eth_src=NODE, sha=NODE)),
        ("from a group address", request(eth_src=BROADCAST)),
        ("from a multicast address", request(eth_src=bytes.fromhex("01005e000001"))),
        ("to another station", request(eth_dst=bytes.fromhex("020000005399"))),
        ("to a multicast group", request(eth_dst=bytes.fromhex("01005e000001"))),
        ("unknown VIP", request(tpa="192.0.2.1")),
    ],
)
def test_no_answer(why: str, frame: bytes) -> None:
    assert reply_to(frame) is None, why


def test_no_answer_on_another_interface() -> None:
    assert reply_to(request(), ifindex=IDX + 1) is None


def test_no_answer_when_the_agent_is_not_live() -> None:
    assert reply_to(request(), live=False) is None
