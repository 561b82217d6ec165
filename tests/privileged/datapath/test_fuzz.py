"""10,000 random and mutated frames against the real program, each checked against the Python model.

Every frame goes from the client's raw socket to the node's tc ingress. For each batch the multiset
of frames coming back must equal the multiset of replies :func:`bpf.arp_model.expected_reply`
predicts: no reply a correct responder would not give, none missing, each byte-exact. The node
has no IPv4 address, so its kernel never answers ARP itself; IPv6 is off, so nothing else talks.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Callable

from bpf.arp_model import expected_reply
from bpf.garp import ARPOP_REQUEST, BROADCAST, arp_frame
from tests.privileged.datapath.lab import (
    OTHER_VIP,
    UNKNOWN_VIP,
    VIP,
    VIP2,
    Lab,
    Loader,
    Port,
    answers_as_the_model,
)

FRAMES = 10_000
BATCH = 100
SEED = 0x4C32


def _rand_mac(rng: random.Random) -> bytes:
    return bytes([rng.randrange(256) & 0xFE | 0x02]) + rng.randbytes(5)  # unicast, local


def _valid(rng: random.Random, lab: Lab) -> bytes:
    src = _rand_mac(rng)
    tip = rng.choice([VIP, VIP, VIP2, OTHER_VIP, UNKNOWN_VIP])
    spa = rng.choice(["198.51.100.2", "198.51.100.77", "0.0.0.0", tip])  # incl. probe and GARP
    frame = arp_frame(
        eth_dst=rng.choice([BROADCAST, lab.node_mac]),
        eth_src=src,
        op=ARPOP_REQUEST,
        sha=rng.choice([src, _rand_mac(rng)]),
        spa=spa,
        tha=rng.choice([b"\0" * 6, BROADCAST, rng.randbytes(6)]),
        tpa=tip,
        pad_to=rng.choice([42, 60, 60, 64, 100]),
    )
    return frame


def _set(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


def _mutate(rng: random.Random, lab: Lab, frame: bytes) -> bytes:
    kind = rng.randrange(12)
    if kind == 0:  # random byte flips in the headers
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(min(len(frame), 42))
            frame = _set(frame, i, bytes([frame[i] ^ (1 << rng.randrange(8))]))
        return frame
    if kind == 1:  # truncated anywhere from a bare Ethernet header upwards
        return frame[: rng.randint(14, 59)]
    if kind == 2:  # op
        return _set(frame, 20, struct.pack("!H", rng.choice([0, 2, 3, 4, 8, 9, 0x100, 0xFFFF])))
    if kind == 3:  # hrd
        return _set(frame, 14, struct.pack("!H", rng.choice([0, 6, 0x100, 0xFFFF])))
    if kind == 4:  # pro
        return _set(frame, 16, struct.pack("!H", rng.choice([0, 0x86DD, 0x0806, 0x0008])))
    if kind == 5:  # hln / pln
        return _set(frame, 18, bytes([rng.choice([0, 4, 6, 16, 255]), rng.choice([0, 4, 6, 16])]))
    if kind == 6:  # Ethernet destination
        dst = rng.choice(
            [
                _rand_mac(rng),
                b"\x01\x00\x5e\x00\x00\x01",
                b"\x33\x33\0\0\0\1",
                b"\xff\xff\xff\xff\xff\xfe",
                lab.node_mac[:5] + b"\x00",
            ]
        )
        return _set(frame, 0, dst)
    if kind == 7:  # Ethernet source: ours, group addresses
        return _set(frame, 6, rng.choice([lab.node_mac, BROADCAST, b"\x01\x00\x5e\x00\x00\x05"]))
    if kind == 8:  # ethertype
        return _set(
            frame,
            12,
            struct.pack("!H", rng.choice([0x0800, 0x86DD, 0x8035, 0x0000, 0x0600, 0x05DC, 0x0608])),
        )
    if kind == 9:  # VLAN-tagged ARP request (802.1Q or 802.1ad)
        tpid = rng.choice([b"\x81\x00", b"\x88\xa8"])
        return frame[:12] + tpid + struct.pack("!H", rng.randrange(4096)) + frame[12:]
    if kind == 10:  # target IP
        return _set(frame, 38, rng.randbytes(4))
    return frame + rng.randbytes(rng.randint(1, 200))  # trailing garbage


def _random_frame(rng: random.Random) -> bytes:
    frame = rng.randbytes(rng.randint(14, 200))
    if rng.random() < 0.5:
        frame = _set(frame, 12, b"\x08\x06")
    return frame


def _frames(rng: random.Random, lab: Lab) -> list[bytes]:
    out = []
    for _ in range(FRAMES):
        r = rng.random()
        if r < 0.2:
            out.append(_valid(rng, lab))
        elif r < 0.85:
            out.append(_mutate(rng, lab, _valid(rng, lab)))
        else:
            out.append(_random_frame(rng))
    return out


def test_fuzzed_frames_get_exactly_the_replies_the_model_predicts(
    lab: Lab, bpf_root: str, loaders: Callable[..., Loader], client_port: Port
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0", "--attach", "d0")
    keys = {
        (socket.inet_aton(VIP), lab.node_ifindex),
        (socket.inet_aton(VIP2), lab.node_ifindex),
        (socket.inet_aton(OTHER_VIP), lab.other_ifindex),
    }
    for ip, idx in (
        (VIP, lab.node_ifindex),
        (VIP2, lab.node_ifindex),
        (OTHER_VIP, lab.other_ifindex),
    ):
        loader.cmd(f"add {ip} {idx}")

    rng = random.Random(SEED)
    frames = _frames(rng, lab)
    answered = answers_as_the_model(
        client_port,
        frames,
        lambda f: expected_reply(f, ifindex=lab.node_ifindex, iface_mac=lab.node_mac, keys=keys),
        BATCH,
    )

    assert answered > FRAMES // 10, f"only {answered} answered frames: the fuzz lost its positives"
    assert loader.alive()
    sent = sum(loader.cmd(f"get {ip} {lab.node_ifindex}") for ip in (VIP, VIP2))  # type: ignore[misc]
    assert sent == answered
    assert loader.cmd(f"get {OTHER_VIP} {lab.other_ifindex}") == 0
