"""A foreign host on the lab's LAN (``l2lab foreign add <ip>`` / ``remove``): a plain namespace,
``<lab>-foreign``, on the LAN bridge, holding addresses statically, as a forgotten server with a
Service's VIP configured would. Its own kernel answers ARP for them (nothing else runs there) and
never announces them: only the agents' probes find it, which is the case conflict detection must
handle. Documentation addresses of the LAN only (198.51.100.0/24).
"""

from __future__ import annotations

import ipaddress

from lab import netns
from lab.inventory import API_LAN_IP, CLIENT_IP, LAN_PREFIX, LabState, node_ip
from lab.netns import LabError

MEMBER = "foreign"
FOREIGN_MAC = "02:4c:32:00:03:01"
LAN = ipaddress.IPv4Network(f"{LAN_PREFIX}.0/24")


def netns_of(state: LabState) -> str:
    return state.netns_of(MEMBER)


def addresses(state: LabState) -> list[str]:
    """The foreign host's addresses; empty when it is not there."""
    ns = netns_of(state)
    if ns not in netns.list_netns():
        return []
    out = netns.ip("-4", "-o", "addr", "show", "dev", "eth0", netns=ns, check=False)
    return [w.split("/")[0] for line in out.splitlines() for w in line.split()[3:4]]


def add(state: LabState, address: str) -> str:
    """Give the foreign host ``address`` (creating the host first); returns what was done."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise LabError(f"{address!r} is not an IPv4 address; expected one of {LAN}") from None
    taken = {API_LAN_IP: "the switch", CLIENT_IP: "the client"}
    taken |= {node_ip(n.index): n.name for n in state.node_states.values()}
    if ip not in LAN or ip in (LAN.network_address, LAN.broadcast_address):
        raise LabError(f"{address} is not on the lab's LAN; expected a host address of {LAN}")
    if str(ip) in taken:
        raise LabError(f"{address} is {taken[str(ip)]}'s address; expected a VIP or a free one")
    ns = netns_of(state)
    created = ns not in netns.list_netns()
    if created:
        state.namespaces.append(ns)
        state.save()
        netns.add_netns(ns)
        netns.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")  # ARP only: a quiet host
        netns.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
        veth = ("link", "add", MEMBER, "type", "veth", "peer", "name", "eth0", "netns", ns)
        netns.ip(*veth, netns=state.lan_netns)
        netns.ip("link", "set", MEMBER, "master", "br0", "up", netns=state.lan_netns)
        netns.ip("link", "set", "eth0", "address", FOREIGN_MAC, netns=ns)
        netns.ip("link", "set", "eth0", "up", netns=ns)
    if str(ip) in addresses(state):
        raise LabError(f"the foreign host already has {address}")
    netns.ip("addr", "add", f"{ip}/{LAN.prefixlen}", "dev", "eth0", netns=ns)
    host = f"foreign host {ns} ({FOREIGN_MAC})"
    return f"{'created ' if created else ''}{host}, now holding {', '.join(addresses(state))}"


def remove(state: LabState, address: str | None = None) -> str | None:
    """Take ``address`` from the foreign host, or (None) the host off the LAN, its namespace and
    link; None if there was nothing to remove."""
    ns = netns_of(state)
    present = ns in netns.list_netns()
    if address is not None:
        if address not in addresses(state):
            return None
        netns.ip("addr", "del", f"{address}/{LAN.prefixlen}", "dev", "eth0", netns=ns)
        left = addresses(state)
        return f"foreign host {ns} now holding {', '.join(left) if left else 'no address'}"
    if present:
        netns.delete_netns(ns)  # its veth goes with it, and with that its port on the bridge
    if ns in state.namespaces:
        state.namespaces.remove(ns)
        state.save()
    return f"removed foreign host {ns}" if present else None
