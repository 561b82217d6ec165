"""What the end-to-end tests and bench/client_view.py both do to a running lab: run `l2lab`,
read who holds a Service and what the client resolved, watch the client's ARP answers, wait for a
condition, and what `l2lab` has no command for (a second interface on a node, the node's BPF map
keys as l2dbg lists them, its LAN link going down)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.leases import lease_name
from lab import lab, netns
from lab.inventory import API_LAN_IP, LabState

L2LAB = str(Path(sys.executable).parent / "l2lab")


def l2lab(name: str, *args: str, check: bool = True, timeout: float = 90) -> str:
    """``l2lab --name <name> <args>`` as a user types it; its stdout and stderr."""
    done = subprocess.run(
        [L2LAB, "--name", name, *args], capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"l2lab {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout + done.stderr


def disruption_args(action: str, what: str, node: str) -> list[str]:
    """The ``l2lab`` arguments that disrupt ``node``: ``agent kill|stop|...`` (the agent) or
    ``api stall|refuse|heal`` (its traffic with kube-apiserver)."""
    return [action, what, node] if action == "agent" else [action, node, what]


def until(pred: Callable[[], bool], what: str, timeout: float = 20.0, poll: float = 0.02) -> float:
    """Seconds until ``pred`` held; a failure only if it never did within ``timeout``."""
    start = time.monotonic()
    while not pred():
        assert time.monotonic() - start <= timeout, f"{what}: not within {timeout}s"
        time.sleep(poll)
    return time.monotonic() - start


def holder_of(state: LabState, service: str) -> str:
    return lab.leases(state).get(lease_name("default", service), "")


def neighbour(state: LabState, ip: str) -> str:
    """The MAC in the client's neighbour entry for ``ip`` ("" if it has none)."""
    out = netns.ip("neigh", "show", ip, netns=state.client_netns, check=False)
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else ""


def arpwatch(
    state: LabState,
    vip: str | list[str],
    duration: float,
    interval: float = 0.02,
    summary_only: bool = True,
) -> subprocess.Popen[str]:
    """``python -m lab.arpwatch`` in the client: an ARP request for ``vip`` (each of several in
    turn) every ``interval``."""
    vips = [vip] if isinstance(vip, str) else vip
    command = [sys.executable, "-m", "lab.arpwatch", *vips, "--duration", str(duration),
               "--interval", str(interval), *(["--summary-only"] if summary_only else [])]  # fmt: skip
    args, env = lab.exec_args(state, "client", command)
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)


def summary(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The summary line of a finished arpwatch."""
    out, _ = proc.communicate(timeout=30)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])["summary"]
    return result


def add_eth1(state: LabState, node: str) -> int:
    """A second LAN interface ``eth1`` on ``node`` (a veth to the LAN bridge, 198.51.100.199/24,
    with a default route: without a ``--devices`` filter a veth is selected only with one); its
    ifindex."""
    lan, node_ns = state.lan_netns, state.netns_of(node)
    netns.ip("link", "add", "x" + node, "type", "veth", "peer", "name", "eth1",
             "netns", node_ns, netns=lan)  # fmt: skip
    netns.ip("link", "set", "x" + node, "master", "br0", "up", netns=lan)
    netns.ip("addr", "add", "198.51.100.199/24", "dev", "eth1", netns=node_ns)
    netns.ip("link", "set", "eth1", "up", netns=node_ns)
    netns.ip("route", "add", "default", "via", "198.51.100.1", "dev", "eth1",
             "metric", "200", netns=node_ns)  # fmt: skip
    return int(json.loads(netns.ip("-j", "link", "show", "eth1", netns=node_ns))[0]["ifindex"])


def delete_eth1(state: LabState, node: str) -> None:
    """Delete the LAN end of ``node``'s eth1; the kernel takes eth1 with it."""
    netns.ip("link", "del", "x" + node, netns=state.lan_netns)


def set_uplink(state: LabState, node: str, up: bool, how: str = "down") -> None:
    """Take ``node``'s LAN link down or bring it back. ``how`` "down": ``ip link set eth0 down``
    in the node (and, when back up, its default route, which the kernel flushed with the link, as
    a network manager puts it back: a veth is selected only with one); "carrier": the switch
    port, i.e. the link's LAN end, so the node's eth0 stays up and loses its carrier."""
    if how == "carrier":
        netns.ip("link", "set", node, "up" if up else "down", netns=state.lan_netns)
        return
    ns = state.netns_of(node)
    netns.ip("link", "set", "eth0", "up" if up else "down", netns=ns)
    if up:
        netns.ip("route", "replace", "default", "via", API_LAN_IP, "dev", "eth0", netns=ns)


def responder_keys(state: LabState, node: str) -> set[tuple[str, str, int]]:
    """(IP, interface, ifindex) of every key in ``node``'s l2-responder map."""
    out = lab.run_in(state, node, ["l2dbg", "bpf", "l2-responder", "list", "-o", "json"])
    return {(e["IP"], e["Interface"], e["Ifindex"]) for e in json.loads(out)}
