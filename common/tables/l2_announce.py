"""Table ``l2-announce`` (SQL ``l2_announce``): the (IP, interface) pairs this node must answer
ARP for, computed by the l2-announcer from the Services whose lease this node holds.

Primary key: (ip, network_interface), printed in the reference's key order (the IP's 16-byte
form, then the interface name). ``origins`` are the Services that want the pair. ``status`` is the
l2-responder reconciler's: pending until the BPF map has the key, then done or error.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

from statedb.status import Status
from statedb.table import Table, json_codec


@dataclass(frozen=True, slots=True, order=True)
class Origin:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class L2AnnounceEntry:
    ip: str
    network_interface: str
    origins: tuple[Origin, ...] = ()
    status: Status = field(default_factory=Status.pending)


def _origins_to_json(origins: tuple[Origin, ...]) -> list[dict[str, str]]:
    return [{"namespace": o.namespace, "name": o.name} for o in origins]


def _origins_from_json(items: list[dict[str, str]]) -> tuple[Origin, ...]:
    return tuple(Origin(i["namespace"], i["name"]) for i in items)


_V4_MAPPED = bytes(10) + b"\xff\xff"


def _sort_key(e: L2AnnounceEntry) -> tuple[bytes, str]:
    """The reference's key order: the IP's 16-byte form (IPv4 as ::ffff:a.b.c.d), then the
    interface. inet_pton, not ipaddress: this runs for every row l2dbg prints."""
    try:
        packed = _V4_MAPPED + socket.inet_pton(socket.AF_INET, e.ip)
    except OSError:
        try:
            packed = socket.inet_pton(socket.AF_INET6, e.ip)
        except OSError:
            packed = e.ip.encode()
    return packed, e.network_interface


def _to_json(e: L2AnnounceEntry) -> dict[str, Any]:
    return {
        "IP": e.ip,
        "NetworkInterface": e.network_interface,
        "Origins": [{"Name": o.name, "Namespace": o.namespace} for o in e.origins],
        "Status": {
            "Kind": e.status.kind.value,
            "Error": e.status.error,
            "UpdatedAt": e.status.updated_at,
        },
    }


L2_ANNOUNCE: Table[L2AnnounceEntry] = Table(
    name="l2-announce",
    sql_name="l2_announce",
    row_type=L2AnnounceEntry,
    primary_key=("ip", "network_interface"),
    codecs={"origins": json_codec("origins", _origins_to_json, _origins_from_json)},
    header=("IP", "NetworkInterface"),
    format_row=lambda e: (e.ip, e.network_interface),
    to_json=_to_json,
    sort_key=_sort_key,
    doc="IP/interface pairs this node answers ARP for, with the responder's reconcile status.",
)
