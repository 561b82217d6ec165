"""The responder's rules as a pure Python function: what a correct responder answers, byte for byte.

It is the executable specification of ``l2_responder.c`` (the reference's checks plus ours):
the fuzz test sends thousands of frames to the real program and compares every reply with
:func:`expected_reply`; unit tests pin the rules down one by one. Keep the two in step.

Rules, in the program's order; any failure means "no answer, the kernel decides":

1. the frame has no VLAN tag (tagged frames carry another ethertype on the wire);
2. it holds at least the 14-byte Ethernet header and the 28-byte Ethernet/IPv4 ARP body;
3. ethertype ARP, op request, hrd Ethernet, pro IPv4, hln 6, pln 4;
4. the Ethernet source is not a group address and not the interface's own MAC;
5. the Ethernet destination is broadcast or the interface's MAC;
6. {target IP, ingress ifindex} is in the responder map;
7. the agent's liveness stamp is fresh.

The reply is the request rewritten in place (same length, padding kept): Ethernet dst = the
requester's Ethernet source, Ethernet src = our MAC, op = reply, sha = our MAC, spa = the VIP,
tha = the requester's Ethernet source, tpa = the requester's spa.
"""

from __future__ import annotations

import struct
from collections.abc import Collection

ARP_FRAME_LEN = 42
_HDR = struct.Struct("!6s6sHHHBBH6s4s6s4s")
BROADCAST = b"\xff" * 6


def expected_reply(
    frame: bytes,
    *,
    ifindex: int,
    iface_mac: bytes,
    keys: Collection[tuple[bytes, int]],
    live: bool = True,
) -> bytes | None:
    """The reply the responder sends for ``frame`` arriving on ``ifindex``, or None.

    ``keys`` holds (ip4 bytes in network order, ifindex) pairs, as in the map. ``frame`` is the
    frame as sent on the wire (a VLAN tag, if any, still inside it).
    """
    if len(frame) < ARP_FRAME_LEN:
        return None
    (dst, src, proto, hrd, pro, hln, pln, op, _sha, sip, _tha, tip) = _HDR.unpack_from(frame)
    if proto != 0x0806 or op != 1 or hrd != 1 or pro != 0x0800 or hln != 6 or pln != 4:
        return None
    if src[0] & 1 or src == iface_mac:
        return None
    if dst not in (BROADCAST, iface_mac):
        return None
    if (tip, ifindex) not in keys or not live:
        return None
    reply: bytes = (
        src + iface_mac + frame[12:20] + struct.pack("!H", 2) + iface_mac + tip + src + sip
    )
    return reply + frame[ARP_FRAME_LEN:]
