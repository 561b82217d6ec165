"""The controller's in-memory view of links, addresses and routes, folded from netlink updates.

Why a view of its own and not just the table: routes are not a table here (only two facts per
device are needed for selection), addresses need their prefix length to be told apart on delete,
and deleted links must be remembered ("dead") so that late address or route messages for them
do not resurrect a nameless row. The kernel also drops IPv4 routes silently when a link goes
down or loses its last IPv4 address; the view does the same, or a veth would keep a default
route it no longer has. ``NetState`` is plain data with no I/O; the controller turns it
into ``Device`` rows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from agent.devices.selection import IFF_UP, RouteFacts, is_global_unicast
from agent.devices.source import AddrUpdate, LinkUpdate, RouteUpdate, Update
from common.tables.devices import Device, DeviceAddress

MAIN_TABLE = 254
LOCAL_TABLE = 255

_AddrKey = tuple[str, int]  # (address, prefix length)
_RouteKey = tuple[int, str, int, str]  # (table, destination prefix, priority, gateway)


@dataclass(slots=True)
class _Entry:
    """Everything known about one ifindex."""

    link: LinkUpdate | None = None
    addrs: dict[_AddrKey, DeviceAddress] = field(default_factory=dict)  # netlink order
    # route key -> (is a default route in the main table, has a global unicast destination);
    # the two counters keep selection O(1) however many routes a device has.
    routes: dict[_RouteKey, tuple[bool, bool]] = field(default_factory=dict)
    default_routes: int = 0
    global_routes: int = 0

    def empty(self) -> bool:
        return self.link is None and not self.addrs and not self.routes


class NetState:
    """Links, addresses and routes per ifindex, plus the ifindexes of deleted links."""

    def __init__(self, dead_link_retention: float = 300.0) -> None:
        self._entries: dict[int, _Entry] = {}
        # ifindex -> time of the link delete. Kept for a while only: late messages arrive within
        # moments, and a node that churns pods would otherwise grow this set without bound.
        self._dead: dict[int, float] = {}
        self._dead_retention = dead_link_retention

    def ifindexes(self) -> list[int]:
        return sorted(self._entries)

    def is_dead(self, ifindex: int) -> bool:
        return ifindex in self._dead

    def apply(self, update: Update, now: float) -> int | None:
        """Fold one update in; returns the ifindex whose device may have changed, or None."""
        if isinstance(update, LinkUpdate):
            return self._apply_link(update, now)
        if update.ifindex <= 0 or update.ifindex in self._dead:
            # ifindex 0: routes without an output device (blackhole, unreachable).
            return None
        entry = self._entries.get(update.ifindex)
        if entry is None:
            if update.deleted:
                return None
            # Addresses or routes may come before their link; the row says "link not seen yet".
            entry = self._entries[update.ifindex] = _Entry()
        if isinstance(update, AddrUpdate):
            _apply_addr(entry, update)
        else:
            _apply_route(entry, update)
        if entry.empty():
            del self._entries[update.ifindex]
        return update.ifindex

    def _apply_link(self, u: LinkUpdate, now: float) -> int:
        if u.deleted:
            # The kernel does not send a delete for every address and route of a removed link.
            self._entries.pop(u.ifindex, None)
            self._dead[u.ifindex] = now
        else:
            self._dead.pop(u.ifindex, None)
            entry = self._entries.setdefault(u.ifindex, _Entry())
            was_up = entry.link is not None and entry.link.raw_flags & IFF_UP
            if was_up and not u.raw_flags & IFF_UP:
                # Taking a link down flushes its IPv4 routes (but the local table's) silently.
                _flush_ipv4_routes(entry, keep_table=LOCAL_TABLE)
            entry.link = u
        return u.ifindex

    def expire_dead(self, now: float) -> None:
        horizon = now - self._dead_retention
        for ifindex in [i for i, t in self._dead.items() if t < horizon]:
            del self._dead[ifindex]

    def device(self, ifindex: int) -> Device | None:
        """The row for ``ifindex`` before selection (selected=False, no reason), or None."""
        entry = self._entries.get(ifindex)
        if entry is None:
            return None
        addrs = tuple(dict.fromkeys(entry.addrs.values()))  # duplicates ignored, order kept
        link = entry.link
        if link is None:
            return Device(ifindex=ifindex, name="", type="", mtu=0, addresses=addrs)
        return Device(
            ifindex=ifindex,
            name=link.name,
            type=link.kind,
            mtu=link.mtu,
            hw_addr=link.hw_addr,
            raw_flags=link.raw_flags,
            master_index=link.master_index,
            addresses=addrs,
        )

    def route_facts(self, ifindex: int) -> RouteFacts:
        entry = self._entries.get(ifindex)
        if entry is None:
            return RouteFacts()
        return RouteFacts(entry.default_routes > 0, entry.global_routes > 0)


def _apply_addr(entry: _Entry, u: AddrUpdate) -> None:
    key = (u.addr, u.prefixlen)
    if u.deleted:
        entry.addrs.pop(key, None)
        if ":" not in u.addr and not any(":" not in a for a, _ in entry.addrs):
            # Removing the last IPv4 address disables IPv4 on the link: the kernel flushes
            # all of its IPv4 routes without a notification for each.
            _flush_ipv4_routes(entry, keep_table=None)
    else:
        # A repeated RTM_NEWADDR (e.g. a promoted secondary) updates flags in place.
        entry.addrs[key] = DeviceAddress(u.addr, u.secondary, u.scope)


def _flush_ipv4_routes(entry: _Entry, keep_table: int | None) -> None:
    for key in [k for k in entry.routes if ":" not in k[1] and k[0] != keep_table]:
        _remove_route(entry, key)


def _remove_route(entry: _Entry, key: _RouteKey) -> None:
    facts = entry.routes.pop(key, None)
    if facts is not None:
        entry.default_routes -= facts[0]
        entry.global_routes -= facts[1]


def _apply_route(entry: _Entry, u: RouteUpdate) -> None:
    key = (u.table, u.dst, u.priority, u.gateway)
    if u.deleted:
        _remove_route(entry, key)
    elif key not in entry.routes:
        net = ipaddress.ip_network(u.dst, strict=False)
        facts = (
            u.table == MAIN_TABLE and net.prefixlen == 0,
            is_global_unicast(str(net.network_address)),
        )
        entry.routes[key] = facts
        entry.default_routes += facts[0]
        entry.global_routes += facts[1]


__all__ = ["MAIN_TABLE", "NetState"]
