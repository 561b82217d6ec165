"""Benchmarks of the eBPF datapath, against the targets of issue 4.

- ARP round trip seen from a client namespace, over the same veth in the same run: a VIP answered
  by the tc program vs. an address the node interface owns, answered by the kernel. Measured two
  ways, probes interleaved so drift hits both sides alike:
  * ``arping``'s own per-probe times (N probes each);
  * our AF_PACKET prober (send a request, busy-wait for the reply; ``perf_counter_ns``).
  Target: program / kernel median ratio <= 1.3.
- compile-and-load time of the program (the agent pays it once at start);
- adding 4,096 keys to the pinned map one by one (``add_if_missing``, the reconciler's path),
  and dumping them (``items()``, one batch syscall; ``keys()``, one syscall per key).

Run as root: ``.venv/bin/python bench/datapath.py [--probes 200] [--json]``. Everything happens in
namespaces it creates and removes, with documentation addresses only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bpf.garp import ARPOP_REQUEST, BROADCAST, arp_frame  # noqa: E402
from bpf.maps import RESPONDER_MAP_NAME, ResponderMap, pin_path  # noqa: E402

# The namespaces, the loader process and setns come from the privileged tests' lab, so the bench
# measures the very setup the tests check (as bench/agent.py reuses the integration cluster).
from tests.privileged.datapath.lab import (  # noqa: E402
    CLIENT_IP,
    NODE_IP,
    VIP,
    Loader,
    build_lab,
    in_netns,
    sh,
)

TARGETS = {"ratio_arping_median": ("<=", 1.3), "ratio_afpacket_median": ("<=", 1.3)}
_TIME = re.compile(r"time=([0-9.]+) (usec|msec|sec)")


@contextlib.contextmanager
def lab() -> Iterator[tuple[str, str, int, str]]:
    """Node and client namespaces over a veth pair, a BPF root; all removed afterwards.

    ``build_lab`` also adds the tests' second veth (d0/d1) to the node; nothing here uses it.
    """
    tag = uuid.uuid4().hex[:8]
    node, client, root = f"l2b-{tag}-n", f"l2b-{tag}-c", f"/sys/fs/bpf/l2b-{tag}"
    try:
        for ns in (node, client):
            sh("ip", "netns", "add", ns)
        yield node, client, build_lab(node, client, node_ip=True).node_ifindex, root
    finally:
        for ns in (node, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def arping_times(client: str, ip: str, n: int) -> list[float]:
    """Per-probe round trips (µs) as arping reports them."""
    out = sh("ip", "netns", "exec", client, "arping", "-c", str(n), "-W", "0.01", "-I", "c0", ip)
    scale = {"usec": 1.0, "msec": 1e3, "sec": 1e6}
    return [float(v) * scale[u] for v, u in _TIME.findall(out)]


def afpacket_times(client: str, ips: list[str], n: int) -> dict[str, list[float]]:
    """Round trips (µs) from our own raw socket, alternating targets probe by probe."""
    with in_netns(client):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
        sock.bind(("c0", 0x0806))
        _, _, _, _, mac = sock.getsockname()
    sock.setblocking(False)
    frames = {
        ip: arp_frame(
            eth_dst=BROADCAST,
            eth_src=mac,
            op=ARPOP_REQUEST,
            sha=mac,
            spa=CLIENT_IP,
            tha=bytes(6),
            tpa=ip,
        )
        for ip in ips
    }
    wanted = {ip: socket.inet_aton(ip) for ip in ips}

    def answers(ip: str, data: bytes) -> bool:
        return data[20:22] == struct.pack("!H", 2) and data[28:32] == wanted[ip]

    return round_trips(sock, frames, answers, n)


def round_trips(
    sock: socket.socket,
    frames: dict[str, bytes],
    answers: Callable[[str, bytes], bool],
    n: int,
) -> dict[str, list[float]]:
    """Round trips (µs) of ``n`` requests per target from a non-blocking raw socket, the
    targets taken in turn probe by probe; ``answers(target, frame)`` says which frame is the
    answer. A request unanswered within 200 ms is not counted."""
    out: dict[str, list[float]] = {ip: [] for ip in frames}
    ips = list(frames)
    with sock:
        for i in range(n * len(ips)):
            ip = ips[i % len(ips)]
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(2048)
            t0 = time.perf_counter_ns()
            sock.send(frames[ip])
            deadline = t0 + 200_000_000
            while time.perf_counter_ns() < deadline:
                try:
                    data, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    continue
                if addr[2] == socket.PACKET_OUTGOING:  # our own request
                    continue
                if answers(ip, data):
                    out[ip].append((time.perf_counter_ns() - t0) / 1000)
                    break
            time.sleep(0.001)
    return out


def summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs),
        "median_us": round(statistics.median(xs), 2),
        "p90_us": round(xs[int(0.9 * (len(xs) - 1))], 2),
        "mean_us": round(statistics.fmean(xs), 2),
    }


def bench_map(root: str, clear: list[tuple[str, int]]) -> dict[str, float]:
    ips = [f"{net}.{i}" for net in ("198.51.100", "203.0.113") for i in range(256)]
    keys = [(ip, idx) for idx in range(1001, 1009) for ip in ips]  # 512 x 8 = 4,096
    with ResponderMap.open(pin_path(root, RESPONDER_MAP_NAME)) as m:
        for ip, idx in clear:  # room for all 4,096
            m.delete(ip, idx)
        before = len(m.items())
        t0 = time.perf_counter()
        added = sum(m.add_if_missing(ip, idx) for ip, idx in keys)
        t_add = time.perf_counter() - t0
        t0 = time.perf_counter()
        items = m.items()
        t_items = time.perf_counter() - t0
        t0 = time.perf_counter()
        listed = m.keys()
        t_keys = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = sum(m.add_if_missing(ip, idx) for ip, idx in keys)
        t_noop = time.perf_counter() - t0
        for ip, idx in keys:
            m.delete(ip, idx)
    assert added == len(keys) and again == 0 and len(items) == len(listed) == before + len(keys)
    return {
        "keys": len(keys),
        "add_4096_ms": round(t_add * 1e3, 2),
        "add_4096_again_noop_ms": round(t_noop * 1e3, 2),
        "dump_items_batch_ms": round(t_items * 1e3, 2),
        "dump_keys_iterate_ms": round(t_keys * 1e3, 2),
    }


def run(probes: int) -> dict[str, Any]:
    with lab() as (node, client, idx, root):
        loader = Loader(node, root, "--attach", "n0")
        try:
            loader.cmd(f"add {VIP} {idx}")
            arping_times(client, VIP, 5)  # warm up both paths (neighbour entries, caches)
            arping_times(client, NODE_IP, 5)
            prog: list[float] = []
            kern: list[float] = []
            rounds = 4
            for _ in range(rounds):
                prog += arping_times(client, VIP, probes // rounds)
                kern += arping_times(client, NODE_IP, probes // rounds)
            raw = afpacket_times(client, [VIP, NODE_IP], probes * 5)
            result: dict[str, Any] = {
                "compile_and_load_s": round(loader.ready["compile_seconds"], 3),
                "arping_program": summary(prog),
                "arping_kernel": summary(kern),
                "afpacket_program": summary(raw[VIP]),
                "afpacket_kernel": summary(raw[NODE_IP]),
                "map": bench_map(root, [(VIP, idx)]),
            }
            result["ratio_arping_median"] = round(
                result["arping_program"]["median_us"] / result["arping_kernel"]["median_us"], 3
            )
            result["ratio_afpacket_median"] = round(
                result["afpacket_program"]["median_us"] / result["afpacket_kernel"]["median_us"], 3
            )
        finally:
            loader.stop("disable")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probes", type=int, default=200, help="arping probes per target")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    if os.geteuid() != 0:
        print("bench/datapath.py needs root (namespaces, BPF)", file=sys.stderr)
        return 2
    res = run(a.probes)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"compile+load of l2_responder.c: {res['compile_and_load_s']} s")
    for how in ("arping", "afpacket"):
        pr, ke = res[f"{how}_program"], res[f"{how}_kernel"]
        print(
            f"{how:9} program: median {pr['median_us']} µs p90 {pr['p90_us']} (n={pr['n']})  "
            f"kernel: median {ke['median_us']} µs p90 {ke['p90_us']} (n={ke['n']})  "
            f"ratio {res[f'ratio_{how}_median']}"
        )
    m = res["map"]
    print(
        f"map: add {m['keys']} keys {m['add_4096_ms']} ms, again (all present) "
        f"{m['add_4096_again_noop_ms']} ms; dump items() {m['dump_items_batch_ms']} ms, "
        f"keys() {m['dump_keys_iterate_ms']} ms"
    )
    for key, (op, target) in TARGETS.items():
        ok = res[key] <= target if op == "<=" else res[key] >= target
        print(f"target {key} {op} {target}: {res[key]} {'ok' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
