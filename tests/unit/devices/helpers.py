"""Builders of netlink updates for the devices tests (documentation addresses only)."""

from __future__ import annotations

from agent.devices.source import AddrUpdate, LinkUpdate, RouteUpdate, Update

UP = 0x1043  # up|broadcast|multicast|running
DOWN = 0x1002


def link(ifindex: int, name: str, kind: str = "device", flags: int = UP, **kw: int) -> LinkUpdate:
    return LinkUpdate(
        ifindex=ifindex,
        name=name,
        kind=kind,
        mtu=1500,
        hw_addr=f"02:00:00:00:00:{ifindex:02x}",
        raw_flags=flags,
        master_index=kw.get("master", 0),
    )


def gone(ifindex: int) -> LinkUpdate:
    return LinkUpdate(ifindex=ifindex, deleted=True)


def addr(ifindex: int, ip: str, plen: int = 24, *, deleted: bool = False, **kw: bool) -> AddrUpdate:
    scope = 253 if ip.startswith("fe80") else 0
    return AddrUpdate(
        ifindex, ip, plen, deleted=deleted, secondary=kw.get("secondary", False), scope=scope
    )


def route(
    ifindex: int, dst: str, table: int = 254, *, deleted: bool = False, gw: str = ""
) -> RouteUpdate:
    return RouteUpdate(ifindex, dst, table, deleted=deleted, gateway=gw)


def uplink(ifindex: int, name: str, ip: str, net: str, kind: str = "device") -> list[Update]:
    """A link with an address and the connected and local routes the kernel would add."""
    return [
        link(ifindex, name, kind),
        addr(ifindex, ip),
        route(ifindex, net),
        route(ifindex, f"{ip}/32", table=255),
    ]
