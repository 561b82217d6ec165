"""Table ``conflicts``: another host answering for a VIP this node announces.

One row per (VIP, interface, foreign MAC): a MAC that is not the interface's own sent an ARP
packet whose sender IP is the VIP (a reply to one of our probes, a gratuitous ARP, its own
request) while this node held the VIP's lease. Written by the agent's conflict detector
(agent/conflicts/); a row is deleted once that MAC has stayed silent for the detector's quiet
time (its probes unanswered) or when this node stops announcing the VIP there.

Times are wall-clock seconds since the epoch (for people); ``defended_at`` is 0 until the agent
sent a gratuitous ARP to take the address back.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from common.tables._codecs import strings_codec
from statedb.table import Table


@dataclass(frozen=True, slots=True)
class Conflict:
    ip: str
    network_interface: str
    foreign_mac: str  # lower-case colon form
    our_mac: str = ""  # the interface's MAC, which answers for the VIP from this node
    services: tuple[str, ...] = ()  # "namespace/name" of the Services that want the VIP
    first_seen: float = 0.0
    last_seen: float = 0.0
    packets: int = 0  # conflicting ARP packets seen from this MAC
    defended_at: float = 0.0  # the last gratuitous ARP sent to defend the VIP; 0: never
    defences: int = 0


def clock_time(t: float) -> str:
    """``19:04:05`` (UTC) for a wall-clock time; empty for 0."""
    return time.strftime("%H:%M:%S", time.gmtime(t)) if t else ""


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


def _sort_key(c: Conflict) -> tuple[bytes, str, str]:
    try:
        packed = socket.inet_pton(socket.AF_INET, c.ip)
    except OSError:
        packed = c.ip.encode()
    return packed, c.network_interface, c.foreign_mac


def _row(c: Conflict) -> tuple[str, ...]:
    return (
        c.ip,
        c.network_interface,
        c.foreign_mac,
        ", ".join(c.services),
        clock_time(c.first_seen),
        clock_time(c.last_seen),
        str(c.packets),
        clock_time(c.defended_at) or "-",
    )


def _json(c: Conflict) -> dict[str, Any]:
    return {
        "IP": c.ip,
        "NetworkInterface": c.network_interface,
        "ForeignMAC": c.foreign_mac,
        "OurMAC": c.our_mac,
        "Services": list(c.services),
        "FirstSeen": _iso(c.first_seen),
        "LastSeen": _iso(c.last_seen),
        "Packets": c.packets,
        "DefendedAt": _iso(c.defended_at),
        "Defences": c.defences,
    }


CONFLICTS: Table[Conflict] = Table(
    name="conflicts",
    sql_name="conflicts",
    row_type=Conflict,
    primary_key=("ip", "network_interface", "foreign_mac"),
    codecs={"services": strings_codec("services")},
    header=(
        "IP",
        "NetworkInterface",
        "ForeignMAC",
        "Services",
        "FirstSeen",
        "LastSeen",
        "Packets",
        "DefendedAt",
    ),
    format_row=_row,
    to_json=_json,
    sort_key=_sort_key,
    doc="Other hosts answering ARP for a VIP this node announces (foreign MAC, when seen).",
)
