"""Table ``l2-fence`` (SQL ``l2_fence``): what keeps this node from serving on an interface, and
until when. The fence gate reads it; a node does not contest a Service whose addresses it could
not answer for on any of its interfaces.

Two writers, each of its own rows (the ``kind`` column):

- ``link``: the link fence (agent/fence/links.py) keeps a row for an interface that could carry
  announcements but is down or has no carrier, and keeps it for a hold-down after the link is back,
  so a flapping link does not make the node campaign on and off. ``ip`` is empty.
- ``datapath``: the responder's verifier (agent/responder/verifier.py) writes a row when the
  responder entry of an address (``ip``) or the program on an interface (``ip`` empty) went
  missing and could not be restored, or had to be restored again and again; it clears after its
  hold-down.

A row exists only while something is wrong (or held down); an empty table is a healthy node.
Primary key: (interface, ip, kind). Index ``interface``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

from statedb.table import Table


class FenceKind(enum.StrEnum):
    LINK = "link"
    DATAPATH = "datapath"


REASON_INTERFACE_DOWN = "interface-down"
"""The refusal code of a ``link`` row: down, no carrier, or back for less than the hold-down."""
REASON_DATAPATH_FAILED = "datapath-failed"
"""The refusal code of a ``datapath`` row."""


@dataclass(frozen=True, slots=True)
class Fence:
    interface: str
    ip: str = ""
    """A VIP for one responder entry; empty for the whole interface."""
    kind: str = FenceKind.LINK
    reason: str = REASON_INTERFACE_DOWN
    detail: str = ""
    """One line: what was found, since when, and what clears it."""
    since: float = 0.0
    """Wall-clock seconds since the epoch when the fault was first seen (display only)."""
    until: float = 0.0
    """Wall-clock seconds since the epoch when the hold-down ends; 0 while the cause lasts."""


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""


def _row(f: Fence) -> tuple[str, ...]:
    return (f.interface, f.ip, f.kind, f.reason, _clock(f.since), _clock(f.until), f.detail)


def _json(f: Fence) -> dict[str, Any]:
    return {
        "Interface": f.interface,
        "IP": f.ip,
        "Kind": f.kind,
        "Reason": f.reason,
        "Detail": f.detail,
        "Since": f.since,
        "Until": f.until,
    }


L2_FENCE: Table[Fence] = Table(
    name="l2-fence",
    sql_name="l2_fence",
    row_type=Fence,
    primary_key=("interface", "ip", "kind"),
    indexes={"interface": ("interface",)},
    header=("Interface", "IP", "Kind", "Reason", "Since", "Until", "Detail"),
    format_row=_row,
    to_json=_json,
    doc="Interfaces and responder entries this node cannot serve on now (self-fencing).",
)

L2_FENCE_BY_INTERFACE = L2_FENCE.index("interface")

__all__ = [
    "L2_FENCE",
    "L2_FENCE_BY_INTERFACE",
    "REASON_DATAPATH_FAILED",
    "REASON_INTERFACE_DOWN",
    "Fence",
    "FenceKind",
]
