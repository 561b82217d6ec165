"""Table ``l2-nodes`` (SQL ``l2_nodes``): each agent's heartbeat Lease (``l2announcer-node-<node>``)
as THIS node judges it: alive while it was seen to change within its duration, by this node's
monotonic clock since it saw the change (never by the writer's renewTime, so clock offsets between
nodes do not matter). Written by the node-liveness module from the ``leases`` table.

Placement reads it to know which candidates are up; in lease economy mode a Service lease whose
holder's heartbeat is not alive may be taken over. A row changes only when its state does (never
on a mere renewal), so its readers, which recompute every Service, wake only then.
Primary key: node. Index ``state``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

from statedb.table import Table


class Liveness(enum.StrEnum):
    ALIVE = "alive"
    """Seen renewed within its duration."""
    EXPIRED = "expired"
    """Not seen renewed for longer than its duration: the node's agent is down or cut off."""
    RELEASED = "released"
    """Its agent stopped in order and gave the heartbeat up."""


@dataclass(frozen=True, slots=True)
class NodeLiveness:
    node: str
    state: str = Liveness.EXPIRED
    """A :class:`Liveness` value (stored as its text)."""
    duration_seconds: int = 0
    """The heartbeat's leaseDurationSeconds: how long it counts as alive after a renewal seen."""
    since: float = 0.0
    """When this node saw it enter this state, seconds since the epoch (this node's clock)."""

    @property
    def alive(self) -> bool:
        return self.state == Liveness.ALIVE


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else ""


def _json(x: NodeLiveness) -> dict[str, Any]:
    return {
        "Node": x.node,
        "State": str(x.state),
        "LeaseDurationSeconds": x.duration_seconds,
        "Since": x.since,
    }


L2_NODES: Table[NodeLiveness] = Table(
    name="l2-nodes",
    sql_name="l2_nodes",
    row_type=NodeLiveness,
    primary_key=("node",),
    indexes={"state": ("state",)},
    header=("Node", "State", "Duration", "Since"),
    format_row=lambda x: (x.node, x.state, f"{x.duration_seconds}s", _clock(x.since)),
    to_json=_json,
    doc="Each agent's heartbeat as this node judges it: alive, expired or released.",
)

L2_NODES_STATE = L2_NODES.index("state")
