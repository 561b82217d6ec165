"""Neighbour Solicitations, one per rule of bpf.nd_model: the valid ones the responder answers and,
for each rule, one that breaks only that rule. Pure Python: the model's unit tests check the
expectations against the model, the privileged test against the real program."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bpf.ndp import ICMP6_OFF, checksum, multicast_mac, ns_frame, solicited_node

VIP6 = "2001:db8::10"
VIP6_2 = "2001:db8::11"
OTHER_VIP6 = "2001:db8:1::7"  # answered only on the dummy interface
UNKNOWN_VIP6 = "2001:db8::99"
# A multicast target in the map, so that the "target is not multicast" rule is what refuses it.
MULTICAST_TARGET = "ff0e::10"
CLIENT_IP6 = "2001:db8::2"
CLIENT_LL = "fe80::2"
NONCE = struct.pack("!BB6s", 14, 1, b"\x01\x02\x03\x04\x05\x06")  # an option we do not read


@dataclass(frozen=True)
class Case:
    name: str
    frame: bytes
    answered: bool


def put(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


def refix(frame: bytes) -> bytes:
    """Recompute the ICMPv6 checksum over the payload length the frame states (if it is all
    there), so a case breaks only the rule it is about."""
    if len(frame) < ICMP6_OFF + 4:
        return frame
    plen = struct.unpack_from("!H", frame, 18)[0]
    if len(frame) < ICMP6_OFF + plen or plen < 4:
        return frame
    src, dst = frame[22:38], frame[38:54]
    msg = put(frame[ICMP6_OFF : ICMP6_OFF + plen], 2, b"\0\0")
    return put(frame, ICMP6_OFF + 2, struct.pack("!H", checksum(src, dst, msg)))


def set_plen(frame: bytes, plen: int) -> bytes:
    return put(frame, 18, struct.pack("!H", plen))


def cases(node_mac: bytes, client_mac: bytes) -> list[Case]:
    c = client_mac

    def ns(**kw: object) -> bytes:
        args: dict[str, object] = dict(eth_src=c, target=VIP6, src=CLIENT_IP6)
        args.update(kw)
        return ns_frame(**args)  # type: ignore[arg-type]

    base = ns()
    out = [
        Case("multicast, with a source link-layer option", base, True),
        Case("from a link-local address", ns(src=CLIENT_LL), True),
        Case("unicast NUD probe with the option", ns(dst=VIP6, eth_dst=node_mac), True),
        Case("unicast NUD probe without it", ns(dst=VIP6, eth_dst=node_mac, source_ll=b""), True),
        Case("multicast without a source link-layer option", ns(source_ll=b""), True),
        Case("option MAC other than the Ethernet source", ns(source_ll=b"\x02\0\0\0\0\x99"), True),
        Case("duplicate address probe", ns(src=None), True),
        Case("with a nonce option after the source option", ns(options=NONCE), True),
        Case("probe with a nonce", ns(src=None, options=NONCE), True),
        Case("Ethernet padding after the message", base + bytes(20), True),
        Case(
            "a second, longer source option is ignored", ns(options=bytes([1, 2]) + bytes(14)), True
        ),
        Case("second VIP", ns(target=VIP6_2), True),
        # the frame
        Case("truncated inside the target", base[:70], False),
        Case("truncated inside the options", base[:80], False),
        Case("ethertype IPv4", put(base, 12, b"\x08\x00"), False),
        Case("IP version 4 in an IPv6 frame", refix(put(base, 14, b"\x40")), False),
        Case("hop-by-hop header first", refix(put(base, 20, b"\x00")), False),
        Case("a router solicitation", refix(put(base, ICMP6_OFF, bytes([133]))), False),
        Case("an advertisement", refix(put(base, ICMP6_OFF, bytes([136]))), False),
        Case("VLAN tag", base[:12] + b"\x81\x00\x00\x05" + base[12:], False),
        Case("Ethernet source is a group", ns(eth_src=b"\x33\x33\0\0\0\1", source_ll=c), False),
        Case("Ethernet source is ours", ns(eth_src=node_mac, source_ll=c), False),
        Case("IPv6 destination all nodes", ns(dst="ff02::1", eth_dst=b"\x33\x33\0\0\0\1"), False),
        Case(
            "another address's solicited-node group",
            ns(
                dst=solicited_node(UNKNOWN_VIP6),
                eth_dst=multicast_mac(solicited_node(UNKNOWN_VIP6)),
            ),
            False,
        ),
        Case("unicast to another address", ns(dst=VIP6_2, eth_dst=node_mac), False),
        Case("Ethernet destination another station", ns(eth_dst=b"\x02\0\0\0\0\x77"), False),
        Case("Ethernet destination broadcast", ns(eth_dst=b"\xff" * 6), False),
        Case("target not in the map", ns(target=UNKNOWN_VIP6), False),
        Case("target on another interface", ns(target=OTHER_VIP6), False),
        # RFC 4861 7.1.1
        Case("hop limit 254", ns(hop_limit=254), False),
        Case("hop limit 1", ns(hop_limit=1), False),
        Case("code 1", ns(code=1), False),
        Case("bad checksum", put(base, ICMP6_OFF + 2, b"\xde\xad"), False),
        Case("ICMPv6 length 16", refix(set_plen(base, 16)), False),
        Case("ICMPv6 length not a multiple of 8", refix(set_plen(base + b"\0\0\0\0", 36)), False),
        Case("ICMPv6 length past the frame", set_plen(base, 40), False),
        Case("multicast target", ns(target=MULTICAST_TARGET), False),
        Case("multicast source", ns(src="ff02::2"), False),
        Case("zero-length option", ns(options=bytes(8)), False),
        Case(
            "option running past the message",
            refix(put(ns(source_ll=b"", options=NONCE), ICMP6_OFF + 25, b"\x02")),
            False,
        ),
        Case(
            "source option of 16 octets",
            ns(source_ll=b"", options=bytes([1, 2]) + c + bytes(8)),
            False,
        ),
        Case("probe with a source link-layer option", ns(src=None, source_ll=c), False),
        Case("probe to the unicast target", ns(src=None, dst=VIP6, eth_dst=node_mac), False),
        Case("source option carrying a group MAC", ns(source_ll=b"\x33\x33\0\0\0\1"), False),
    ]
    return out
