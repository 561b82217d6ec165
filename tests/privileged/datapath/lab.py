"""Helpers for datapath tests: a node and a client namespace joined by a veth pair, the datapath
loader running inside the node namespace, and a raw Ethernet port on the client side.

Only documentation addresses are used, and only inside namespaces the tests create.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

NODE_IP = "198.51.100.1"
CLIENT_IP = "198.51.100.2"
VIP = "198.51.100.10"
VIP2 = "198.51.100.11"
OTHER_VIP = "203.0.113.7"  # answered only on the dummy interface
UNKNOWN_VIP = "192.0.2.99"

_libc = ctypes.CDLL(None, use_errno=True)


def sh(*args: str, check: bool = True) -> str:
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in netns ``name`` (sockets made inside stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def link_info(ns: str, ifname: str) -> tuple[int, bytes]:
    info = json.loads(sh("ip", "-n", ns, "-j", "link", "show", ifname))[0]
    return int(info["ifindex"]), mac_bytes(info["address"])


@dataclass
class Lab:
    node: str
    client: str
    node_ifindex: int
    node_mac: bytes
    client_ifindex: int
    client_mac: bytes
    other_ifindex: int  # d0, another interface of the node namespace


CLIENT_IP6 = "2001:db8::2"
NODE_IP6 = "2001:db8::1"


def build_lab(node: str, client: str, *, node_ip: bool = False, ipv6: bool = False) -> Lab:
    """veth n0 (node) <-> c0 (client), a second veth d0/d1 in the node; IPv6 off so nothing else
    talks, unless ``ipv6``: then the client has CLIENT_IP6 (and the node NODE_IP6 with
    ``node_ip``), without duplicate address detection, so they are usable at once."""
    flag = "0" if ipv6 else "1"
    for ns in (node, client):
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.all.disable_ipv6={flag}")
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.default.disable_ipv6={flag}")
    sh("ip", "-n", node, "link", "add", "n0", "type", "veth", "peer", "name", "c0", "netns", client)
    sh("ip", "-n", node, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    for ns, dev in (
        (node, "n0"),
        (node, "d0"),
        (node, "d1"),
        (node, "lo"),
        (client, "c0"),
        (client, "lo"),
    ):
        sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "c0")
    if node_ip:
        sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "n0")
    if ipv6:
        sh("ip", "-n", client, "addr", "add", f"{CLIENT_IP6}/64", "dev", "c0", "nodad")
        if node_ip:
            sh("ip", "-n", node, "addr", "add", f"{NODE_IP6}/64", "dev", "n0", "nodad")
    n_idx, n_mac = link_info(node, "n0")
    c_idx, c_mac = link_info(client, "c0")
    d_idx, _ = link_info(node, "d0")
    return Lab(node, client, n_idx, n_mac, c_idx, c_mac, d_idx)


class Loader:
    """``python -m bpf.loader`` inside the node namespace (nsenter keeps bpffs visible)."""

    def __init__(
        self,
        ns: str,
        bpf_root: str,
        *extra: str,
        wrap: tuple[str, ...] = (),
        inner: tuple[str, ...] = (),
    ) -> None:
        """``wrap``: a command prefix the loader runs under (it must exec its arguments).
        ``inner``: the same, but run inside the namespace, after nsenter: for dropping
        capabilities (setpriv), since nsenter itself needs CAP_SYS_ADMIN."""
        self.proc = subprocess.Popen(
            [
                *wrap,
                "nsenter",
                f"--net=/run/netns/{ns}",
                *inner,
                sys.executable,
                "-m",
                "bpf.loader",
                "--bpf-root",
                bpf_root,
                *extra,
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        line = self._readline(120)
        if not line.startswith("ready "):
            self.proc.kill()
            raise RuntimeError(f"loader did not start: {line!r} {self.proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
        self.ready = json.loads(line[len("ready ") :])

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise TimeoutError("loader did not answer")
        return self.proc.stdout.readline().strip()

    def cmd(self, line: str) -> object:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self._readline(30)
        if out.startswith("ok "):
            return json.loads(out[3:])
        raise RuntimeError(f"{line}: {out}")

    def stop(self, how: str = "exit") -> None:
        """``exit`` (keep attached), ``disable`` (detach + unpin) or ``kill`` (SIGKILL)."""
        if self.proc.poll() is not None:
            return
        if how == "kill":
            self.proc.kill()
        else:
            assert self.proc.stdin is not None
            self.proc.stdin.write(how + "\n")
            self.proc.stdin.flush()
        self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc.poll() is None


class Port:
    """A raw Ethernet socket on an interface of a namespace: send frames, collect what arrives."""

    def __init__(self, ns: str, ifname: str) -> None:
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(65536)

    def receive(self, timeout: float, want: int | None = None) -> list[bytes]:
        """Frames that arrived (not our own) within ``timeout`` s, or as soon as ``want`` did."""
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while want is None or len(out) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                break
            with contextlib.suppress(BlockingIOError):
                while True:
                    data, addr = self.sock.recvfrom(65536)
                    if addr[2] != PACKET_OUTGOING:
                        out.append(data)
        return out

    def close(self) -> None:
        self.sock.close()


_RECEIVED = re.compile(r"(\d+) packets transmitted, (\d+) packets received")
_FROM = re.compile(r"bytes from ([0-9a-f:]{17}) \(")


@dataclass
class ArpingResult:
    sent: int
    received: int
    macs: set[str]


def arping(
    ns: str, ip: str, count: int, *, interval: float = 0.05, iface: str = "c0"
) -> ArpingResult:
    """Run arping in ``ns``; each probe waits for its answer at most until the next probe."""
    deadline = max(2.0, count * interval + 1.0)
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "arping",
            "-c",
            str(count),
            "-W",
            str(interval),
            "-w",
            str(deadline),
            "-I",
            iface,
            ip,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=deadline + 30,
    ).stdout
    m = _RECEIVED.search(out)
    if m is None:
        raise RuntimeError(f"unexpected arping output: {out!r}")
    return ArpingResult(int(m.group(1)), int(m.group(2)), set(_FROM.findall(out)))


def answers_as_the_model(
    port: Port, frames: list[bytes], model: Callable[[bytes], bytes | None], batch: int = 100
) -> int:
    """Send ``frames`` in batches of ``batch``; each batch's replies must be exactly what
    ``model`` says of its frames (a frame's reply, or None). Returns how many replies there were."""
    answered = 0
    port.drain()
    for start in range(0, len(frames), batch):
        want: Counter[bytes] = Counter()
        for f in frames[start : start + batch]:
            reply = model(f)
            if reply is not None:
                want[reply] += 1
            port.send(f)
        got = Counter(port.receive(2.0, want=sum(want.values())))
        got.update(port.receive(0.02))  # anything unexpected arriving late
        if got != want:
            extra, missing = got - want, want - got
            raise AssertionError(
                f"batch at frame {start}: {len(extra)} unexpected replies "
                f"{[r.hex() for r in extra][:3]}, {len(missing)} missing "
                f"{[r.hex() for r in missing][:3]}"
            )
        answered += sum(want.values())
    return answered
