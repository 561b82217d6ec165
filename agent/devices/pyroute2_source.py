"""The real ``NetlinkSource``: one pyroute2 rtnetlink socket, subscribed, then dumped.

One socket carries both the subscription and the dumps, so the kernel's order of events is kept
(pyroute2 routes dump replies by sequence number and multicast events to their own queue). The
socket is bound to the link, IPv4/IPv6 address and IPv4/IPv6 route groups *before* the dump, so
a change racing the listing arrives afterwards as an event and is applied on top.

pyroute2 0.9 is asyncio at its core; this adapter owns a private event loop and runs it only
inside its calls, which keeps the controller an ordinary thread. The kernel buffers events
between calls; if it has to drop some it reports ENOBUFS, which becomes ``NetlinkError`` and
makes the controller relist. It works in the network namespace of the calling process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error
from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)

from agent.devices.source import AddrUpdate, LinkUpdate, NetlinkError, RouteUpdate, Update

GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)

RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
IFA_F_SECONDARY = 0x01
RTM_F_CLONED = 0x200  # route cache entries (PMTU exceptions), not routes
# Failures that mean "this subscription is broken": socket errors (ENOBUFS arrives as OSError)
# and netlink error replies (a dump interrupted by changes, EBUSY, ...).
_ERRORS = (OSError, Pyroute2Error)
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# pyroute2 dumps both IPv4 and IPv6 routes only for this (deliberately invalid) family.
_ALL_ROUTE_FAMILIES = 255


class Pyroute2Source:
    """rtnetlink via pyroute2; ``rcvbuf`` is the socket receive buffer in bytes (a bigger one
    rides out bursts such as a routing daemon loading a table without an ENOBUFS relist)."""

    def __init__(self, rcvbuf: int = 4 << 20) -> None:
        self._rcvbuf = rcvbuf
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ipr: Any = None

    def open(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._open())
        except _ERRORS as e:
            self.close()
            raise NetlinkError(f"netlink subscribe failed: {describe(e)}") from e

    async def _open(self) -> None:
        self._ipr = AsyncIPRoute(rcvbuf=self._rcvbuf)
        # As root, lift the buffer above net.core.rmem_max; without privilege keep what we got.
        with contextlib.suppress(OSError):
            self._ipr.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, self._rcvbuf)
        await self._ipr.bind(groups=GROUPS)

    def dump(self) -> list[Update]:
        try:
            updates: list[Update] = self._loop_or_fail().run_until_complete(self._dump())
        except _ERRORS as e:
            raise NetlinkError(f"netlink dump failed: {describe(e)}") from e
        return updates

    async def _dump(self) -> list[Update]:
        out: list[Update] = []
        ipr = self._ipr
        for kind, extra in (("link", {}), ("addr", {}), ("route", {"family": _ALL_ROUTE_FAMILIES})):
            msgs: AsyncIterator[Any] = await getattr(ipr, kind)("dump", **extra)
            async for msg in msgs:
                out.extend(updates_from_message(msg))
        return out

    def receive(self, timeout: float) -> list[Update]:
        try:
            loop = self._loop_or_fail()
            msgs = loop.run_until_complete(asyncio.wait_for(self._next_datagram(), timeout))
        except TimeoutError:
            return []
        except _ERRORS as e:
            # ENOBUFS (events were dropped), or the socket broke.
            raise NetlinkError(f"netlink receive failed: {describe(e)}") from e
        out: list[Update] = []
        for msg in msgs:
            out.extend(updates_from_message(msg))
        return out

    async def _next_datagram(self) -> list[Any]:
        # With sequence 0, get() yields the messages of the next multicast datagram and stops.
        return [msg async for msg in self._ipr.get()]

    def close(self) -> None:
        loop, self._loop = self._loop, None
        ipr, self._ipr = self._ipr, None
        if loop is None:
            return
        try:
            if ipr is not None:

                async def _close() -> None:
                    ipr.close()

                with contextlib.suppress(Exception):
                    loop.run_until_complete(_close())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _loop_or_fail(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._ipr is None:
            raise NetlinkError("netlink source is not open")
        return self._loop


def describe(e: BaseException) -> str:
    """``ENOBUFS (No buffer space available)``: pyroute2's errors often carry no message."""
    code = getattr(e, "errno", None) or getattr(e, "code", None)
    if isinstance(code, int) and code > 0:
        name = errno.errorcode.get(code, f"errno {code}")
        return f"{name} ({os.strerror(code)})"
    return str(e) or type(e).__name__


# -- message conversion (pure) -----------------------------------------------------------------


def updates_from_message(msg: Any) -> list[Update]:
    """The updates one rtnetlink message stands for; [] for what the controller ignores."""
    kind = msg["header"]["type"]
    if kind in (RTM_NEWLINK, RTM_DELLINK):
        link = link_update(msg)
        return [link] if link is not None else []
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        addr = addr_update(msg)
        return [addr] if addr is not None else []
    if kind in (RTM_NEWROUTE, RTM_DELROUTE):
        return route_updates(msg)
    return []


def link_update(msg: Any) -> LinkUpdate | None:
    if msg["family"] != socket.AF_UNSPEC:
        # AF_BRIDGE RTM_NEWLINK/RTM_DELLINK describe bridge port state; a DELLINK of that
        # family means "left the bridge", not "the link is gone".
        return None
    ifindex = int(msg["index"])
    if msg["header"]["type"] == RTM_DELLINK:
        return LinkUpdate(ifindex=ifindex, deleted=True)
    linkinfo = msg.get("IFLA_LINKINFO")
    kind = linkinfo.get("IFLA_INFO_KIND") if linkinfo is not None else None
    return LinkUpdate(
        ifindex=ifindex,
        name=msg.get("IFLA_IFNAME") or "",
        kind=kind or "device",
        mtu=int(msg.get("IFLA_MTU") or 0),
        hw_addr=normalize_hw_addr(msg.get("IFLA_ADDRESS")),
        raw_flags=int(msg["flags"]),
        master_index=int(msg.get("IFLA_MASTER") or 0),
    )


def normalize_hw_addr(value: str | None) -> str:
    """Lower-case colon form; all-zero (lo, some tunnels) and missing give ''."""
    if not value:
        return ""
    text = value.lower()
    if all(part.strip("0") == "" for part in text.split(":")):
        return ""
    return text


def addr_update(msg: Any) -> AddrUpdate | None:
    if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
        return None
    # IFA_LOCAL is the local end on point-to-point links, where IFA_ADDRESS is the peer.
    text = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
    if not text:
        return None
    flags = msg.get("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return AddrUpdate(
        ifindex=int(msg["index"]),
        addr=ipaddress.ip_address(text).compressed,
        prefixlen=int(msg["prefixlen"]),
        deleted=msg["header"]["type"] == RTM_DELADDR,
        secondary=bool(int(flags) & IFA_F_SECONDARY),
        scope=int(msg["scope"]),
    )


def route_updates(msg: Any) -> list[Update]:
    family = msg["family"]
    if family not in (socket.AF_INET, socket.AF_INET6) or msg["flags"] & RTM_F_CLONED:
        return []
    zero = "0.0.0.0" if family == socket.AF_INET else "::"
    dst_len = int(msg["dst_len"])
    network = ipaddress.ip_network(f"{msg.get('RTA_DST') or zero}/{dst_len}", strict=False)
    table = msg.get("RTA_TABLE")
    table = int(table if table is not None else msg["table"])
    deleted = msg["header"]["type"] == RTM_DELROUTE
    priority = int(msg.get("RTA_PRIORITY") or 0)
    hops = msg.get("RTA_MULTIPATH")
    # (output ifindex, gateway) per next hop; none for blackhole, unreachable and prohibit.
    if hops:
        nexthops = [(int(h["oif"]), h.get("RTA_GATEWAY")) for h in hops]
    elif msg.get("RTA_OIF"):
        nexthops = [(int(msg.get("RTA_OIF")), msg.get("RTA_GATEWAY"))]
    else:
        nexthops = []
    return [
        RouteUpdate(
            ifindex=oif,
            dst=str(network),
            table=table,
            deleted=deleted,
            priority=priority,
            gateway=str(gw or ""),
        )
        for oif, gw in nexthops
    ]


__all__ = ["GROUPS", "Pyroute2Source", "normalize_hw_addr", "updates_from_message"]
