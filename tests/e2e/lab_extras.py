"""Changes to a running lab that `l2lab` has no command for, shared by the end-to-end tests and
bench/client_view.py: a second interface on a node, and the node's BPF map keys as l2dbg lists
them."""

from __future__ import annotations

import json

from lab import lab, netns
from lab.state import LabState


def add_eth1(state: LabState, node: str) -> int:
    """A second LAN interface ``eth1`` on ``node`` (a veth to the LAN bridge, 198.51.100.199/24,
    with a default route: a veth is selected only with one, reference rule 9); its ifindex."""
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


def responder_keys(state: LabState, node: str) -> set[tuple[str, str, int]]:
    """(IP, interface, ifindex) of every key in ``node``'s l2-responder map."""
    out = lab.run_in(state, node, ["l2dbg", "bpf", "l2-responder", "list", "-o", "json"])
    return {(e["IP"], e["Interface"], e["Ifindex"]) for e in json.loads(out)}
