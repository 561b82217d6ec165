"""The seam between the devices controller and netlink: typed updates and the source interface.

The controller never sees pyroute2 messages. A ``NetlinkSource`` turns them into the three
update types below, so unit tests feed updates from a fake source without a kernel, and the
parsing of netlink attributes lives in one module (``agent.devices.pyroute2_source``).

Lifecycle of a source, once per (re)start of the controller::

    src = factory()
    src.open()                 # subscribe first, so nothing between listing and events is lost
    src.dump()                 # every link, address and route, as "new" updates
    src.receive(timeout)       # then changes, [] when nothing arrived in time; repeat
    src.close()                # always, also after an error
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class NetlinkError(Exception):
    """The subscription is broken (socket error, ENOBUFS overrun): relist from scratch."""


@dataclass(frozen=True, slots=True)
class LinkUpdate:
    """RTM_NEWLINK / RTM_DELLINK of a link (not the AF_BRIDGE port messages)."""

    ifindex: int
    deleted: bool = False
    name: str = ""
    kind: str = "device"  # IFLA_INFO_KIND, or "device" when there is none
    mtu: int = 0
    hw_addr: str = ""  # lower-case colon form; "" for none or all-zero
    raw_flags: int = 0  # ifi_flags: IFF_*
    master_index: int = 0  # IFLA_MASTER


@dataclass(frozen=True, slots=True)
class AddrUpdate:
    """RTM_NEWADDR / RTM_DELADDR."""

    ifindex: int
    addr: str  # canonical text (ipaddress), the local address for point-to-point links
    prefixlen: int = 0
    deleted: bool = False
    secondary: bool = False  # IFA_F_SECONDARY
    scope: int = 0  # RT_SCOPE_*


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    """RTM_NEWROUTE / RTM_DELROUTE for one output device (a multipath route gives one each)."""

    ifindex: int
    dst: str  # prefix in canonical text: "0.0.0.0/0", "198.51.100.0/24", "fe80::/64"
    table: int = 254
    deleted: bool = False
    priority: int = 0
    gateway: str = ""


Update = LinkUpdate | AddrUpdate | RouteUpdate


class NetlinkSource(Protocol):
    """Where the controller gets links, addresses and routes from (see the module docstring)."""

    def open(self) -> None: ...

    def dump(self) -> list[Update]: ...

    def receive(self, timeout: float) -> list[Update]:
        """Changes that arrived, waiting at most ``timeout`` seconds for the first one.

        Raises NetlinkError when the subscription is broken and must be rebuilt.
        """
        ...

    def close(self) -> None: ...


__all__ = [
    "AddrUpdate",
    "LinkUpdate",
    "NetlinkError",
    "NetlinkSource",
    "RouteUpdate",
    "Update",
]
