"""The Neighbour Solicitation responder in a real kernel, held to the pure model (bpf.nd_model).

Every frame goes from the client's raw socket to the node's tc ingress, and what comes back must be
exactly what :func:`bpf.nd_model.expected_reply` predicts: no reply a correct responder would not
give, none missing, each byte-exact. First the named cases (each valid form, and one frame per
rule that breaks only that rule), then 6,000 random and mutated frames. IPv6 is off in both
namespaces, so no kernel answers or talks: every IPv6 frame seen is the program's.
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct
import threading
import time
from collections.abc import Callable

from bpf.maps import PINNED_MAPS, RESPONDER_V6_MAP_NAME
from bpf.nd_model import expected_reply
from bpf.ndp import ICMP6_OFF, NS_MAX_LEN, multicast_mac, ns_frame, solicited_node
from tests.privileged.datapath.lab import VIP, Lab, Loader, Port, answers_as_the_model, sh
from tests.privileged.datapath.nd_cases import (
    CLIENT_IP6,
    CLIENT_LL,
    MULTICAST_TARGET,
    NONCE,
    OTHER_VIP6,
    UNKNOWN_VIP6,
    VIP6,
    VIP6_2,
    cases,
    put,
    refix,
    set_plen,
)

StartLoader = Callable[..., Loader]
FRAMES = 6_000
BATCH = 100
SEED = 0x4E44


def _start(lab: Lab, bpf_root: str, loaders: StartLoader) -> tuple[Loader, set[tuple[bytes, int]]]:
    loader = loaders(lab.node, bpf_root, "--attach", "n0", "--attach", "d0")
    entries = [
        (VIP6, lab.node_ifindex),
        (VIP6_2, lab.node_ifindex),
        (MULTICAST_TARGET, lab.node_ifindex),
        (OTHER_VIP6, lab.other_ifindex),
    ]
    for ip, idx in entries:
        assert loader.cmd(f"add {ip} {idx}") is True
    return loader, {(ipaddress.IPv6Address(ip).packed, idx) for ip, idx in entries}


def _exchange(lab: Lab, port: Port, keys: set[tuple[bytes, int]], frames: list[bytes]) -> int:
    """Send ``frames`` in batches; each batch's replies must be the model's. Returns how many
    replies there were."""
    return answers_as_the_model(
        port,
        frames,
        lambda f: expected_reply(f, ifindex=lab.node_ifindex, iface_mac=lab.node_mac, keys=keys),
        BATCH,
    )


def test_each_named_case_is_answered_exactly_as_the_model_says(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader, keys = _start(lab, bpf_root, loaders)
    for case in cases(lab.node_mac, lab.client_mac):
        model = expected_reply(
            case.frame, ifindex=lab.node_ifindex, iface_mac=lab.node_mac, keys=keys
        )
        assert (model is not None) == case.answered, f"model disagrees with the case: {case.name}"
        client_port.drain()
        client_port.send(case.frame)
        got = client_port.receive(0.5 if case.answered else 0.05, want=1)
        assert got == ([model] if model else []), f"{case.name}: {[g.hex() for g in got]}"
    answered = sum(1 for c in cases(lab.node_mac, lab.client_mac) if c.answered)
    counted = sum(loader.cmd(f"get {ip} {lab.node_ifindex}") for ip in (VIP6, VIP6_2))  # type: ignore[misc]
    assert counted == answered
    assert loader.cmd(f"get {MULTICAST_TARGET} {lab.node_ifindex}") == 0


def _rand_mac(rng: random.Random) -> bytes:
    return bytes([rng.randrange(256) & 0xFE | 0x02]) + rng.randbytes(5)


def _valid(rng: random.Random, lab: Lab) -> bytes:
    target = rng.choice([VIP6, VIP6, VIP6_2, OTHER_VIP6, UNKNOWN_VIP6, MULTICAST_TARGET])
    src = _rand_mac(rng)
    probe = rng.random() < 0.2
    unicast = not probe and rng.random() < 0.3
    kw: dict[str, object] = dict(eth_src=src, target=target)
    if not probe:
        kw["src"] = rng.choice([CLIENT_IP6, CLIENT_LL, "2001:db8::77", target])
    if unicast:
        kw["dst"], kw["eth_dst"] = target, lab.node_mac
        if rng.random() < 0.5:
            kw["source_ll"] = b""
    elif not probe and rng.random() < 0.2:
        kw["source_ll"] = rng.choice([b"", _rand_mac(rng)])
    if rng.random() < 0.3:
        kw["options"] = rng.choice([NONCE, NONCE * 2, bytes([1, 2]) + rng.randbytes(14)])
    frame = ns_frame(**kw)  # type: ignore[arg-type]
    if rng.random() < 0.2:
        frame += bytes(rng.randint(1, 30))  # Ethernet padding
    return frame


def _mutate(rng: random.Random, lab: Lab, frame: bytes) -> bytes:
    kind = rng.randrange(16)
    fix = rng.random() < 0.85  # mostly keep the checksum right, so the mutated rule decides
    if kind == 0:  # bit flips anywhere in the headers and message
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(min(len(frame), 86))
            frame = put(frame, i, bytes([frame[i] ^ (1 << rng.randrange(8))]))
    elif kind == 1:  # truncated
        return frame[: rng.randint(14, len(frame) - 1)]
    elif kind == 2:  # hop limit
        frame = put(frame, 21, bytes([rng.choice([0, 1, 64, 128, 254])]))
    elif kind == 3:  # code
        frame = put(frame, ICMP6_OFF + 1, bytes([rng.choice([1, 2, 128, 255])]))
    elif kind == 4:  # checksum
        return put(frame, ICMP6_OFF + 2, rng.randbytes(2))
    elif kind == 5:  # payload length
        plen = rng.choice([0, 8, 16, 20, 23, 25, 28, 31, 33, 40, 48, 64, NS_MAX_LEN + 8, 0xFFFF])
        frame = set_plen(frame, plen)
        if rng.random() < 0.5 and plen <= 2000:
            frame = frame.ljust(ICMP6_OFF + plen, b"\0")
    elif kind == 6:  # a target that is multicast, or another address
        frame = put(
            frame,
            ICMP6_OFF + 8,
            ipaddress.IPv6Address(
                rng.choice([MULTICAST_TARGET, "ff02::1", UNKNOWN_VIP6, VIP6_2])
            ).packed,
        )
    elif kind == 7:  # source address: unspecified, multicast
        frame = put(
            frame, 22, ipaddress.IPv6Address(rng.choice(["::", "ff02::2", "ff05::1"])).packed
        )
    elif kind == 8:  # destination address
        dst = rng.choice(["ff02::1", VIP6, VIP6_2, UNKNOWN_VIP6])
        frame = put(frame, 38, ipaddress.IPv6Address(dst).packed)
        if rng.random() < 0.5:
            frame = put(frame, 38, solicited_node(rng.choice([VIP6, VIP6_2, UNKNOWN_VIP6])))
    elif kind == 9:  # Ethernet destination
        mac = rng.choice(
            [
                _rand_mac(rng),
                b"\xff" * 6,
                b"\x33\x33\0\0\0\1",
                multicast_mac(solicited_node(UNKNOWN_VIP6)),
                multicast_mac(solicited_node(VIP6)),
                lab.node_mac,
            ]
        )
        frame = put(frame, 0, mac)
    elif kind == 10:  # Ethernet source
        frame = put(frame, 6, rng.choice([lab.node_mac, b"\x33\x33\0\0\0\1", b"\xff" * 6]))
    elif kind == 11:  # options: zero length, overrunning, long or odd source option
        opt = rng.choice(
            [
                bytes(8),
                bytes([14, 3]) + bytes(6),
                bytes([1, 2]) + bytes(14),
                bytes([1, 0]) + bytes(6),
                bytes([1, 1, 0x33, 0x33, 0, 0, 0, 1]),
            ]
        )
        frame = frame[: ICMP6_OFF + 24] + opt + frame[ICMP6_OFF + 24 :]
        plen = struct.unpack_from("!H", frame, 18)[0]
        frame = set_plen(frame, plen + len(opt))
    elif kind == 12:  # next header, ICMPv6 type
        if rng.random() < 0.5:
            frame = put(frame, 20, bytes([rng.choice([0, 17, 43, 60])]))
        else:
            frame = put(frame, ICMP6_OFF, bytes([rng.choice([128, 133, 134, 136, 137])]))
    elif kind == 13:  # version, ethertype
        if rng.random() < 0.5:
            frame = put(frame, 14, bytes([rng.choice([0x40, 0x00, 0x70, 0x6F])]))
        else:
            return put(frame, 12, rng.choice([b"\x08\x00", b"\x08\x06", b"\x86\xdc"]))
    elif kind == 14:  # VLAN tag
        return (
            frame[:12] + rng.choice([b"\x81\x00", b"\x88\xa8"]) + struct.pack("!H", 7) + frame[12:]
        )
    else:
        return frame + rng.randbytes(rng.randint(1, 100))  # trailing garbage
    return refix(frame) if fix else frame


def _frames(rng: random.Random, lab: Lab) -> list[bytes]:
    out = []
    for _ in range(FRAMES):
        r = rng.random()
        if r < 0.25:
            out.append(_valid(rng, lab))
        elif r < 0.9:
            out.append(_mutate(rng, lab, _valid(rng, lab)))
        else:
            frame = rng.randbytes(rng.randint(14, 200))
            out.append(put(frame, 12, b"\x86\xdd") if rng.random() < 0.7 else frame)
    return out


def test_fuzzed_solicitations_get_exactly_the_replies_the_model_predicts(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader, keys = _start(lab, bpf_root, loaders)
    frames = _frames(random.Random(SEED), lab)
    answered = _exchange(lab, client_port, keys, frames)
    assert answered > FRAMES // 10, f"only {answered} answered frames: the fuzz lost its positives"
    assert loader.alive()
    counted = sum(loader.cmd(f"get {ip} {lab.node_ifindex}") for ip in (VIP6, VIP6_2))  # type: ignore[misc]
    assert counted == answered
    assert loader.cmd(f"get {OTHER_VIP6} {lab.other_ifindex}") == 0


def test_a_stale_stamp_silences_the_ns_responder_and_a_fresh_one_revives_it(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    loader, _keys = _start(lab, bpf_root, loaders)
    frame = ns_frame(eth_src=lab.client_mac, target=VIP6, src=CLIENT_IP6)
    client_port.drain()
    client_port.send(frame)
    assert len(client_port.receive(1.0, want=1)) == 1  # the positive control
    loader.cmd("clear-stamp")
    client_port.send(frame)
    assert client_port.receive(0.3) == []
    loader.cmd("start-stamp")
    client_port.send(frame)
    assert len(client_port.receive(1.0, want=1)) == 1


def test_a_restarted_loader_keeps_answering_solicitations_without_a_gap(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    first, _keys = _start(lab, bpf_root, loaders)
    frame = ns_frame(eth_src=lab.client_mac, target=VIP6, src=CLIENT_IP6)
    results: list[bool] = []
    stop = threading.Event()

    def probe() -> None:  # one solicitation every 10 ms, each waiting for its answer
        while not stop.is_set():
            client_port.drain()
            client_port.send(frame)
            results.append(len(client_port.receive(0.2, want=1)) == 1)
            time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        time.sleep(0.3)
        first.stop("kill")
        second = loaders(lab.node, bpf_root, "--attach", "n0", "--attach", "d0")
        time.sleep(0.3)
    finally:
        stop.set()
        prober.join()
    assert len(results) > 50 and all(results), f"{results.count(False)} of {len(results)} lost"
    assert second.cmd(f"add {VIP6} {lab.node_ifindex}") is False  # adopted, counter kept
    assert second.cmd(f"get {VIP6} {lab.node_ifindex}") == len(results)


def test_an_upgrade_over_pins_without_the_ipv6_map_adds_it_and_keeps_the_others(
    lab: Lab, bpf_root: str, loaders: StartLoader, client_port: Port
) -> None:
    # As an agent from before IPv6 leaves them: the three maps, no l2announcer_responder_v6.
    first = loaders(lab.node, bpf_root, "--attach", "n0")
    first.cmd(f"add {VIP} {lab.node_ifindex}")
    first.stop("exit")
    os.unlink(f"{bpf_root}/{RESPONDER_V6_MAP_NAME}")
    sh("ip", "netns", "exec", lab.node, "tc", "filter", "del", "dev", "n0", "ingress", "pref", "2")
    second = loaders(lab.node, bpf_root, "--attach", "n0")
    filters = sh("ip", "netns", "exec", lab.node, "tc", "filter", "show", "dev", "n0", "ingress")
    assert "protocol ipv6 pref 2" in filters  # the second filter is added beside the first
    assert second.cmd(f"add {VIP} {lab.node_ifindex}") is False  # adopted
    assert second.cmd(f"add {VIP6} {lab.node_ifindex}") is True
    client_port.drain()
    client_port.send(ns_frame(eth_src=lab.client_mac, target=VIP6, src=CLIENT_IP6))
    assert len(client_port.receive(1.0, want=1)) == 1
    assert sorted(os.listdir(bpf_root)) == sorted(name for name, _kind in PINNED_MAPS)
