"""The conflict detector's packets: one AF_PACKET socket per announcing interface that receives
only ARP (a classic BPF filter in the kernel), and sends our probes and defences.

Bound to ``ETH_P_ARP``, not ``ETH_P_ALL``: the kernel hands a protocol-bound socket only the
frames of that protocol, so the rest of the interface's traffic costs nothing (an all-protocols
tap measured +75 ns of CPU per frame here, on every frame of what is often the node's busiest
interface), and never the frames the node sends. The price: such a socket sees a frame after tc
ingress, where our own responder takes the ARP requests it answers, a foreign host's gratuitous
*request* for the VIP among them. That host is found all the same: it answers the next probe
(its kernel holds the address), and its gratuitous replies and its own requests for other
addresses pass the responder. The filter keeps only ARP and its first 64 bytes.
"""

from __future__ import annotations

import ctypes
import socket
import struct

from bpf.garp import ARPOP_REQUEST, BROADCAST, arp_frame, garp_frame

ETH_P_ARP = 0x0806
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
SNAP_LEN = 64  # an Ethernet/IPv4 ARP frame is 42 bytes, 60 with padding
NO_MAC = b"\0" * 6

# ldh [12]; jeq #0x806, keep, drop; ret #SNAP_LEN; ret #0
_ARP_ONLY = (
    (0x28, 0, 0, 12),
    (0x15, 0, 1, 0x0806),
    (0x06, 0, 0, SNAP_LEN),
    (0x06, 0, 0, 0),
)


def probe_frame(mac: bytes, vip: str) -> bytes:
    """RFC 5227's probe: who has ``vip``? from our MAC with sender IP 0.0.0.0, broadcast."""
    return arp_frame(
        eth_dst=BROADCAST,
        eth_src=mac,
        op=ARPOP_REQUEST,
        sha=mac,
        spa="0.0.0.0",
        tha=NO_MAC,
        tpa=vip,
    )


class ArpSocket:
    """A non-blocking packet socket on one interface that receives ARP frames from the wire."""

    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        # Protocol 0 receives nothing until bind, so no frame of another interface or protocol
        # slips in before the filter is attached.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            program = b"".join(struct.pack("HBBI", *ins) for ins in _ARP_ONLY)
            buf = ctypes.create_string_buffer(program, len(program))
            fprog = struct.pack("HL", len(_ARP_ONLY), ctypes.addressof(buf))
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            sock.bind((ifname, ETH_P_ARP))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def mac(self) -> bytes:
        """The interface's MAC, read now (it may change)."""
        return bytes(self._sock.getsockname()[4])

    def receive(self, limit: int = 256) -> list[bytes]:
        """The ARP frames waiting (at most ``limit``), without blocking; OSError when the
        interface went away."""
        frames: list[bytes] = []
        for _ in range(limit):
            try:
                data, addr = self._sock.recvfrom(SNAP_LEN)
            except BlockingIOError:
                break
            if addr[2] != PACKET_OUTGOING:
                frames.append(data)
        return frames

    def send_probe(self, vip: str) -> None:
        self._sock.send(probe_frame(self.mac, vip))

    def send_defence(self, vip: str) -> None:
        """One gratuitous ARP (reply to broadcast, sender = target = VIP, our MAC)."""
        self._sock.send(garp_frame(self.mac, vip))

    def close(self) -> None:
        self._sock.close()
