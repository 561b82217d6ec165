"""Services that share an address are placed as one: one lease, one holder, one answering MAC.

Several Services may carry the same load-balancer or external IP (one per protocol, or a
"shared IP" annotation of the IPAM). Each Service having its own lease would let two nodes hold
two of them and both answer ARP for that IP, a MAC flapping between two nodes for the client.
So the Services whose address sets overlap (directly or through a chain: A shares with B, B with
C) form a group, and the group follows one lease: the one of its *leader*, the member with the
smallest ``namespace/name``. Every node that would announce any member campaigns for the
leader's lease, and its holder announces every member it selects.

The groups are computed from every eligible Service (not only the ones a policy selects on this
node), so all nodes, whatever their policies, agree on the leader from the same Services table.
A Service that shares no address with another is its own group of one: its lease keeps the
name it always had.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from agent.policy.evaluate import eligible
from common.tables.services import Service

ServiceKey = tuple[str, str]


def addresses(s: Service) -> set[str]:
    """The addresses an announcement of ``s`` could answer for, normalized (an IPv6 address may
    be spelled two ways); strings that are not addresses are skipped, as announcing skips them."""
    out = set()
    for ip in (*s.load_balancer_ips, *(s.external_ips or ())):
        try:
            out.add(str(ipaddress.ip_address(ip)))
        except ValueError:
            continue
    return out


def shared_ip_leaders(services: Iterable[Service]) -> dict[ServiceKey, ServiceKey]:
    """Each Service that shares an address with another -> its group's leader (the leader maps
    to itself). Services that share nothing are absent."""
    parent: dict[ServiceKey, ServiceKey] = {}

    def find(k: ServiceKey) -> ServiceKey:
        root = k
        while parent[root] != root:
            root = parent[root]
        while parent[k] != root:  # path compression
            parent[k], k = root, parent[k]
        return root

    first_owner: dict[str, ServiceKey] = {}
    shared: set[ServiceKey] = set()
    for s in services:
        if not eligible(s):
            continue
        key = (s.namespace, s.name)
        parent.setdefault(key, key)
        for ip in addresses(s):
            other = first_owner.setdefault(ip, key)
            if other == key:
                continue
            shared.update((key, other))
            a, b = find(key), find(other)
            if a != b:
                # The smaller key is the root, so a group's root is its leader.
                lo, hi = min(a, b), max(a, b)
                parent[hi] = lo
    return {k: find(k) for k in sorted(shared)}


def shared_with(
    key: ServiceKey,
    leaders: Mapping[ServiceKey, ServiceKey],
    services: Mapping[ServiceKey, Service],
) -> str:
    """One address ``key`` shares with its leader's group, for a human-readable detail."""
    mine = addresses(services[key]) if key in services else set()
    for other, leader in sorted(leaders.items()):
        if other != key and leader == leaders.get(key) and other in services:
            common = mine & addresses(services[other])
            if common:
                return min(common)
    return ""
