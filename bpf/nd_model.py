"""The responder's Neighbour Solicitation rules as a pure Python function, byte for byte.

The executable specification of ``answer_ns`` in ``l2_responder.c``, as :mod:`bpf.arp_model` is
for ARP: the privileged fuzz test sends thousands of frames to the real program and compares
every reply with :func:`expected_reply`; unit tests pin the rules down one by one. Keep the two in
step. Any failed rule means "no answer, the kernel decides".

The frame:

1. no VLAN tag; at least Ethernet + IPv6 header + the 24 octets of a solicitation;
2. ethertype IPv6, IP version 6, next header ICMPv6 (no extension headers), ICMPv6 type 135;
3. the Ethernet source is not a group address and not the interface's MAC;
4. the IPv6 destination is the target itself or the target's solicited-node group;
5. the Ethernet destination is the interface's MAC or that group's MAC (33:33:ff:xx:xx:xx);
6. {target, ingress ifindex} is in the IPv6 responder map.

Validation a receiver must do before using a solicitation (RFC 4861 section 7.1.1), and ours:

7. hop limit 255; ICMPv6 code 0;
8. the IPv6 source is not multicast; the target is not multicast;
9. ICMPv6 length (the IPv6 payload length) at least 24, a multiple of 8 (every option is),
   at most :data:`bpf.ndp.NS_MAX_LEN`, and all of it in the frame;
10. from the unspecified address (a duplicate address probe): to the solicited-node group;
11. the ICMPv6 checksum is right;
12. every option has a length above zero and the options fill the message exactly; the first
    Source link-layer option (later ones are ignored, as the kernel does) is 8 octets long,
    does not come from the unspecified address, and does not carry a group address;
13. the agent's liveness stamp is fresh.

The answer (RFC 4861 section 7.2.4): a Neighbour Advertisement from the target, R=0, O=1, with
the interface's MAC in a Target link-layer option, hop limit 255. To a solicitation from an
address: S=1, sent to that address, at the Source link-layer option's MAC, or the frame's
Ethernet source without one (a unicast probe need not carry it). To a duplicate address probe:
S=0, to all nodes (ff02::1, 33:33:00:00:00:01). The reply is 86 bytes whatever the request's
length was.
"""

from __future__ import annotations

import struct
from collections.abc import Collection

from bpf.ndp import (
    ALL_NODES,
    ALL_NODES_MAC,
    ETH_P_IPV6,
    ICMP6_OFF,
    IPPROTO_ICMPV6,
    NA_FLAG_OVERRIDE,
    NA_FLAG_SOLICITED,
    ND_HOP_LIMIT,
    ND_NEIGHBOR_SOLICIT,
    ND_OPT_SOURCE_LL,
    NS_LEN,
    NS_MAX_LEN,
    UNSPECIFIED,
    checksum,
    multicast_mac,
    na_frame,
    solicited_node,
)

NS_FRAME_MIN = ICMP6_OFF + NS_LEN  # 78
_HDR = struct.Struct("!6s6sHBxxxHBB16s16sBBHI16s")


def expected_reply(
    frame: bytes,
    *,
    ifindex: int,
    iface_mac: bytes,
    keys: Collection[tuple[bytes, int]],
    live: bool = True,
) -> bytes | None:
    """The reply the responder sends for ``frame`` arriving on ``ifindex``, or None.

    ``keys`` holds (16 address bytes, ifindex) pairs, as in the map. ``frame`` is the frame as
    sent on the wire (a VLAN tag, if any, still inside it).
    """
    if len(frame) < NS_FRAME_MIN:
        return None
    (dst, src, proto, vtc, plen, nexthdr, hop, saddr, daddr, icmp_type, code, _ck, _r, target) = (
        _HDR.unpack_from(frame)
    )
    if proto != ETH_P_IPV6 or vtc >> 4 != 6 or nexthdr != IPPROTO_ICMPV6:
        return None
    if icmp_type != ND_NEIGHBOR_SOLICIT:
        return None
    if src[0] & 1 or src == iface_mac:
        return None
    group = solicited_node(target)
    to_group = daddr == group
    if not to_group and daddr != target:
        return None
    if dst not in (iface_mac, multicast_mac(group)):
        return None
    if (target, ifindex) not in keys:
        return None
    if hop != ND_HOP_LIMIT or code != 0:
        return None
    if saddr[0] == 0xFF or target[0] == 0xFF:
        return None
    if plen < NS_LEN or plen > NS_MAX_LEN or plen % 8:
        return None
    if len(frame) < ICMP6_OFF + plen:
        return None
    dad = saddr == UNSPECIFIED
    if dad and not to_group:
        return None
    message = frame[ICMP6_OFF : ICMP6_OFF + plen]
    if checksum(saddr, daddr, message) != 0:
        return None
    reply_to = src
    have_sll = False
    off = NS_LEN
    while off < plen:
        opt_type, opt_len = message[off], message[off + 1]
        if opt_len == 0 or off + opt_len * 8 > plen:
            return None
        if opt_type == ND_OPT_SOURCE_LL and not have_sll:
            if dad or opt_len != 1:
                return None
            reply_to = message[off + 2 : off + 8]
            have_sll = True
        off += opt_len * 8
    if have_sll and reply_to[0] & 1:
        return None
    if not live:
        return None
    if dad:
        return na_frame(
            eth_dst=ALL_NODES_MAC,
            mac=iface_mac,
            src=target,
            dst=ALL_NODES,
            target=target,
            flags=NA_FLAG_OVERRIDE,
        )
    return na_frame(
        eth_dst=reply_to,
        mac=iface_mac,
        src=target,
        dst=saddr,
        target=target,
        flags=NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE,
    )
