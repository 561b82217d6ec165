"""The client's view of a VIP over time: ``python -m lab.arpwatch <ip>`` (run inside the client,
``l2lab exec client -- python -m lab.arpwatch 198.51.100.101``) sends an ARP request every
``--interval`` seconds and records, for each request, every answer: which MAC, after how long.

Each request carries its own sender MAC (``02:4c:32:ff:<seq>``), so an answer names the request
it answers: two answers to one request (two nodes answering at once) cannot hide as one. Prints
one JSON object per request, then a summary line::

    {"seq": 17, "sent": 0.34, "answers": [["02:4c:32:00:01:02", 0.00001]]}
    {"summary": {"requests": 500, "answered": 480, "double": 0, "macs": [...], "outage": 2.9}}

``outage`` is the longest time between two answered requests.

Several addresses (``python -m lab.arpwatch 198.51.100.101 198.51.100.102 ...``) are asked in
turn, one request each per interval; the summary then adds up the requests and double answers
and takes the longest outage over all of them, and ``by_ip`` has each one's own summary.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

from bpf.garp import ARPOP_REQUEST, BROADCAST, ETH_P_ARP, arp_frame
from lab.inventory import CLIENT_IP

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def probe_mac(seq: int) -> bytes:
    return bytes([0x02, 0x4C, 0x32, 0xFF, (seq >> 8) & 0xFF, seq & 0xFF])


def request_frame(seq: int, sender_ip: str, target_ip: str) -> bytes:
    sha = probe_mac(seq)
    return arp_frame(
        eth_dst=BROADCAST,
        eth_src=sha,
        op=ARPOP_REQUEST,
        sha=sha,
        spa=sender_ip,
        tha=b"\x00" * 6,
        tpa=target_ip,
    )


@dataclass
class Probe:
    seq: int
    sent: float
    answers: list[tuple[str, float]] = field(default_factory=list)
    target: str = ""


def summarize_by_ip(
    probes: list[Probe],
) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """(the summary over every address, each address's own summary)."""
    targets = list(dict.fromkeys(p.target for p in probes))
    by_ip = {ip: summarize([p for p in probes if p.target == ip]) for ip in targets}
    macs = {mac for p in probes for mac, _ in p.answers}
    outages = [summarize_outage([p for p in probes if p.target == ip]) for ip in targets]
    total: dict[str, object] = {
        "requests": len(probes),
        "answered": sum(1 for p in probes if p.answers),
        "double": sum(1 for p in probes if len(p.answers) > 1),
        "macs": sorted(macs),
        "outage": max(outages, default=0.0),
    }
    return total, by_ip


def summarize_outage(probes: list[Probe]) -> float:
    """The longest time between two answered requests (and before the first, after the last)."""
    outage = 0.0
    last = probes[0].sent if probes else 0.0
    for p in probes:
        if p.answers:
            outage = max(outage, p.sent - last)
            last = p.sent
    if probes:
        outage = max(outage, probes[-1].sent - last)
    return round(outage, 3)


def summarize(probes: list[Probe]) -> dict[str, object]:
    answered = [p for p in probes if p.answers]
    outage = 0.0
    last = probes[0].sent if probes else 0.0
    for p in answered:
        outage = max(outage, p.sent - last)
        last = p.sent
    if probes:
        outage = max(outage, probes[-1].sent - last)
    macs: list[str] = []
    for p in answered:
        for mac, _ in p.answers:
            if not macs or macs[-1] != mac:
                macs.append(mac)
    return {
        "requests": len(probes),
        "answered": len(answered),
        "double": sum(1 for p in probes if len(p.answers) > 1),
        "macs": macs,
        "outage": round(outage, 3),
    }


def watch(
    ifname: str, sender_ip: str, target_ip: str | list[str], interval: float, duration: float
) -> list[Probe]:
    """Requests for ``target_ip`` (or each of several, in turn) every ``interval`` seconds."""
    targets = [target_ip] if isinstance(target_ip, str) else list(target_ip)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((ifname, ETH_P_ARP))
    ifindex = socket.if_nametoindex(ifname)
    mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    probes: dict[bytes, Probe] = {}  # by sender MAC: the latest request that used it
    sent: list[Probe] = []
    start = time.monotonic()
    next_send = start
    seq = 0
    while True:
        now = time.monotonic()
        if now - start >= duration:
            break
        if now >= next_send:
            for target in targets:
                sha = probe_mac(seq)
                probes[sha] = Probe(seq, now - start, target=target)
                sent.append(probes[sha])
                sock.send(request_frame(seq, sender_ip, target))
                seq += 1
            next_send += interval
        ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if not ready:
            continue
        frame = sock.recv(2048)
        if len(frame) < 42 or frame[12:14] != b"\x08\x06":
            continue
        op = struct.unpack("!H", frame[20:22])[0]
        tha = frame[32:38]
        if op != 2 or tha not in probes or socket.inet_ntoa(frame[28:32]) != probes[tha].target:
            continue
        probe = probes[tha]
        probe.answers.append(
            (_mac_text(frame[22:28]), round(time.monotonic() - start - probe.sent, 6))
        )
    # Late answers to the last requests.
    deadline = time.monotonic() + 0.1
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.02)
        if ready:
            frame = sock.recv(2048)
            tha = frame[32:38]
            if len(frame) >= 42 and struct.unpack("!H", frame[20:22])[0] == 2 and tha in probes:
                probes[tha].answers.append((_mac_text(frame[22:28]), -1.0))
    sock.close()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.arpwatch")
    parser.add_argument("ip", nargs="+")
    parser.add_argument("--interface", default="eth0")
    parser.add_argument("--source", default=CLIENT_IP, help="sender IP of the requests")
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--summary-only", action="store_true")
    args = parser.parse_args(argv)
    probes = watch(args.interface, args.source, args.ip, args.interval, args.duration)
    if not args.summary_only:
        for p in probes:
            print(json.dumps({"seq": p.seq, "sent": round(p.sent, 4), "answers": p.answers}))
    if len(args.ip) == 1:
        print(json.dumps({"summary": summarize(probes)}))
    else:
        total, by_ip = summarize_by_ip(probes)
        print(json.dumps({"summary": total, "by_ip": by_ip}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
