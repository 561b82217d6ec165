"""Regression: gratuitous ARPs reuse one socket per interface. One socket per packet made a
takeover of 4,096 keys take minutes (closing a packet socket waits for an RCU grace period)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

CODE = r"""
import socket, subprocess, sys
from bpf.garp import GarpError, GarpSockets
opened = []
real = socket.socket
class Counting(real):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        opened.append(1)
socket.socket = Counting
subprocess.run(["ip", "link", "add", "g0", "type", "veth", "peer", "name", "g1"], check=True)
subprocess.run(["ip", "link", "set", "g0", "up"], check=True)
subprocess.run(["ip", "link", "set", "g1", "up"], check=True)
idx = socket.if_nametoindex("g0")
s = GarpSockets()
for i in range(200):
    frame = s.send(f"198.51.100.{i % 250 + 1}", idx)
assert len(frame) == 60
print("opened", len(opened))
subprocess.run(["ip", "link", "del", "g0"], check=True)
try:
    s.send("198.51.100.1", idx)
except GarpError as e:
    print("gone", e)
s.close()
"""


def test_one_socket_serves_many_packets_and_a_vanished_interface_is_an_error(
    make_netns: Callable[[], str],
) -> None:
    ns = make_netns()
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CODE],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "opened 1"
    assert lines[1].startswith("gone gratuitous arp sender interface")
