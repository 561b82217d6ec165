"""The conflict detector's packets: one AF_PACKET socket per announcing interface that receives
only ARP (a classic BPF filter in the kernel), and sends our probes and defences.

Bound to ``ETH_P_ARP``, not ``ETH_P_ALL``: the kernel hands a protocol-bound socket only the
frames of that protocol, so the rest of the interface's traffic costs nothing (an all-protocols
tap measured +75 ns of CPU per frame here, on every frame of what is often the node's busiest
interface), and never the frames the node sends. The price: such a socket sees a frame after tc
ingress, where our own responder takes the ARP requests it answers, a foreign host's gratuitous
*request* for the VIP among them. That host is found all the same: it answers the next probe
(its kernel holds the address), and its gratuitous replies and its own requests for other
addresses pass the responder. The filter keeps only ARP frames whose sender IP is one of the
interface's VIPs, and their first 64 bytes: the LAN's ordinary ARP traffic stays in the kernel.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
from collections.abc import Iterable

from bpf.garp import ARPOP_REQUEST, BROADCAST, arp_frame, garp_frame

ETH_P_ARP = 0x0806
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
SNAP_LEN = 64  # an Ethernet/IPv4 ARP frame is 42 bytes, 60 with padding
NO_MAC = b"\0" * 6

MAX_FILTERED_VIPS = 2000
"""Above this many VIPs on one interface the filter keeps every ARP frame (a classic BPF program
has at most 4096 instructions, two per VIP here) and the rules sort them out in Python."""

Instruction = tuple[int, int, int, int]  # code, jt, jf, k
_LDH_ABS, _LD_W_ABS, _JEQ_K, _RET_K = 0x28, 0x20, 0x15, 0x06
_ACCEPT = (_RET_K, 0, 0, SNAP_LEN)
_DROP = (_RET_K, 0, 0, 0)


def arp_filter(vips: Iterable[str]) -> list[Instruction]:
    """A classic BPF program that keeps ARP frames whose sender IP is one of ``vips`` (their
    first ``SNAP_LEN`` bytes) and drops the rest in the kernel, so ordinary ARP traffic on the
    LAN (every host's requests, broadcast) never wakes the agent. Every ARP frame when there
    are more than ``MAX_FILTERED_VIPS``."""
    wanted = sorted({int(ipaddress.IPv4Address(v)) for v in vips})
    ethertype = (_LDH_ABS, 0, 0, 12)
    if len(wanted) > MAX_FILTERED_VIPS:
        return [ethertype, (_JEQ_K, 0, 1, ETH_P_ARP), _ACCEPT, _DROP]
    program: list[Instruction] = [
        ethertype,
        (_JEQ_K, 1, 0, ETH_P_ARP),  # ARP: skip the drop
        _DROP,
        (_LD_W_ABS, 0, 0, 28),  # the ARP sender IP (14 + 8 + 6)
    ]
    for vip in wanted:  # jeq #vip: accept (the next instruction), else skip it
        program += [(_JEQ_K, 0, 1, vip), _ACCEPT]
    return [*program, _DROP]
    program[-1] = (_LD_W_ABS, 0, 0, 28)  # the ARP sender IP (14 + 8 + 6)
    program.insert(2, _DROP)  # not ARP
    program[1] = (_JEQ_K, 1, 0, ETH_P_ARP)  # ARP: on to the sender IP; else the drop below
    for vip in wanted:  # jeq #vip, accept (next), on (skip it)
        program += [(_JEQ_K, 0, 1, vip), _ACCEPT]
    return [*program, _DROP]


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

    def __init__(self, ifname: str, vips: Iterable[str] = ()) -> None:
        self.ifname = ifname
        self.received = 0  # frames handed to the agent (past the kernel's filter)
        # Protocol 0 receives nothing until bind, so no frame of another interface or protocol
        # slips in before the filter is attached.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._sock = sock
            self.set_vips(vips)
            sock.bind((ifname, ETH_P_ARP))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise

    def set_vips(self, vips: Iterable[str]) -> None:
        """Keep only ARP frames whose sender IP is one of ``vips`` from now on (the kernel swaps
        the filter atomically)."""
        program = arp_filter(vips)
        code = b"".join(struct.pack("HBBI", *ins) for ins in program)
        buf = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

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
        self.received += len(frames)
        return frames

    def send_probe(self, vip: str) -> None:
        self._sock.send(probe_frame(self.mac, vip))

    def send_defence(self, vip: str) -> None:
        """One gratuitous ARP (reply to broadcast, sender = target = VIP, our MAC)."""
        self._sock.send(garp_frame(self.mac, vip))

    def close(self) -> None:
        self._sock.close()
