"""IPv6 Neighbour Discovery frames, byte for byte: what the responder answers with, what the agent
announces on takeover, and solicitations for tests and benchmarks.

Only the two messages the responder deals in: the Neighbour Solicitation (type 135) and the
Neighbour Advertisement (type 136), on Ethernet, with no extension headers. Addresses are passed
as their 16 packed bytes or as text.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_OPT_SOURCE_LL = 1
ND_OPT_TARGET_LL = 2
NA_FLAG_ROUTER = 0x80
NA_FLAG_SOLICITED = 0x40
NA_FLAG_OVERRIDE = 0x20
ND_HOP_LIMIT = 255
ETH_HLEN = 14
IP6_HLEN = 40
ICMP6_OFF = ETH_HLEN + IP6_HLEN
NS_LEN = 24  # type, code, checksum, reserved, target
NA_LEN = 32  # the advertisement with its Target link-layer option
# The longest solicitation the responder answers (the program is compiled with it). A real one is
# 24 to 40 octets; each 8 octets more costs the verifier a loop iteration at every agent start
# (256: 50 ms, 1240: 360 ms).
NS_MAX_LEN = 256
ALL_NODES = ipaddress.IPv6Address("ff02::1").packed
ALL_NODES_MAC = b"\x33\x33\x00\x00\x00\x01"
UNSPECIFIED = bytes(16)
# The interval between unsolicited advertisements a node sends for one address (RetransTimer's
# default), and how many it sends (MAX_NEIGHBOR_ADVERTISEMENT).
RETRANS_TIMER_S = 1.0
MAX_NEIGHBOR_ADVERTISEMENT = 3

_IP6 = struct.Struct("!IHBB16s16s")


def packed(ip: str | bytes) -> bytes:
    if isinstance(ip, bytes):
        if len(ip) != 16:
            raise ValueError(f"an IPv6 address is 16 bytes, got {len(ip)}")
        return ip
    return ipaddress.IPv6Address(ip).packed


def solicited_node(ip: str | bytes) -> bytes:
    """ff02::1:ffXX:XXXX for the address's low 24 bits."""
    return bytes.fromhex("ff0200000000000000000001ff") + packed(ip)[13:]


def multicast_mac(group: bytes) -> bytes:
    """The Ethernet address an IPv6 group is sent to: 33:33 and the group's low 32 bits."""
    return b"\x33\x33" + group[12:]


def checksum(src: bytes, dst: bytes, message: bytes) -> int:
    """The ICMPv6 checksum of ``message`` (its checksum field included as it is) between two
    addresses: 0 when a received message's checksum is right."""
    data = src + dst + struct.pack("!II", len(message), IPPROTO_ICMPV6) + message
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _with_checksum(src: bytes, dst: bytes, message: bytes) -> bytes:
    body = message[:2] + b"\0\0" + message[4:]
    return body[:2] + struct.pack("!H", checksum(src, dst, body)) + body[4:]


def ipv6_frame(
    *, eth_dst: bytes, eth_src: bytes, src: bytes, dst: bytes, payload: bytes, hop_limit: int
) -> bytes:
    header = _IP6.pack(0x60000000, len(payload), IPPROTO_ICMPV6, hop_limit, src, dst)
    return eth_dst + eth_src + struct.pack("!H", ETH_P_IPV6) + header + payload


def na_frame(
    *, eth_dst: bytes, mac: bytes, src: bytes, dst: bytes, target: bytes, flags: int
) -> bytes:
    """A Neighbour Advertisement from ``mac`` with a Target link-layer option carrying it."""
    if len(mac) != 6:
        raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
    message = struct.pack(
        "!BBHB3x16sBB6s", ND_NEIGHBOR_ADVERT, 0, 0, flags, target, ND_OPT_TARGET_LL, 1, mac
    )
    return ipv6_frame(
        eth_dst=eth_dst,
        eth_src=mac,
        src=src,
        dst=dst,
        payload=_with_checksum(src, dst, message),
        hop_limit=ND_HOP_LIMIT,
    )


def unsolicited_na_frame(mac: bytes, vip: str | bytes) -> bytes:
    """The takeover announcement: to all nodes, from the VIP, not solicited, overriding, with
    our MAC in the Target link-layer option (a receiver updates an existing entry from it)."""
    target = packed(vip)
    return na_frame(
        eth_dst=ALL_NODES_MAC,
        mac=mac,
        src=target,
        dst=ALL_NODES,
        target=target,
        flags=NA_FLAG_OVERRIDE,
    )


def ns_frame(
    *,
    eth_src: bytes,
    target: str | bytes,
    src: str | bytes | None = None,
    dst: str | bytes | None = None,
    eth_dst: bytes | None = None,
    source_ll: bytes | None = None,
    options: bytes = b"",
    hop_limit: int = ND_HOP_LIMIT,
    code: int = 0,
) -> bytes:
    """A Neighbour Solicitation with a correct checksum. Defaults: from the unspecified address
    (a duplicate address probe) unless ``src`` is given, to the target's solicited-node group,
    with a Source link-layer option of ``eth_src`` when there is a source address."""
    tgt = packed(target)
    s = packed(src) if src is not None else UNSPECIFIED
    d = packed(dst) if dst is not None else solicited_node(tgt)
    if eth_dst is None:
        eth_dst = multicast_mac(d) if d[0] == 0xFF else b"\xff" * 6
    if source_ll is None and s != UNSPECIFIED:
        source_ll = eth_src
    opts = (struct.pack("!BB6s", ND_OPT_SOURCE_LL, 1, source_ll) if source_ll else b"") + options
    message = struct.pack("!BBH4x16s", ND_NEIGHBOR_SOLICIT, code, 0, tgt) + opts
    return ipv6_frame(
        eth_dst=eth_dst,
        eth_src=eth_src,
        src=s,
        dst=d,
        payload=_with_checksum(s, d, message),
        hop_limit=hop_limit,
    )
