"""The catalogue of l2announcer's tables: one module per table, read by the agent, l2dbg and the
tests alike. ``CATALOGUE`` maps the name users type to its definition, in l2dbg's listing order.
"""

from __future__ import annotations

from typing import Any

from common.tables.config import CONFIG
from common.tables.conflicts import CONFLICTS
from common.tables.contest import L2_CONTEST
from common.tables.devices import DEVICES
from common.tables.endpoint_slices import ENDPOINT_SLICES
from common.tables.fence import L2_FENCE
from common.tables.health import HEALTH
from common.tables.l2_announce import L2_ANNOUNCE
from common.tables.leases import LEASES
from common.tables.node_liveness import L2_NODES
from common.tables.nodes import NODES
from common.tables.pods import PODS
from common.tables.policies import POLICIES
from common.tables.services import SERVICES
from statedb.table import Table

CATALOGUE: dict[str, Table[Any]] = {
    t.name: t
    for t in (
        CONFIG,
        CONFLICTS,
        DEVICES,
        ENDPOINT_SLICES,
        HEALTH,
        L2_ANNOUNCE,
        L2_CONTEST,
        L2_FENCE,
        L2_NODES,
        LEASES,
        NODES,
        PODS,
        POLICIES,
        SERVICES,
    )
}

__all__ = [
    "CATALOGUE",
    "CONFIG",
    "CONFLICTS",
    "DEVICES",
    "ENDPOINT_SLICES",
    "HEALTH",
    "L2_ANNOUNCE",
    "L2_CONTEST",
    "L2_FENCE",
    "L2_NODES",
    "LEASES",
    "NODES",
    "PODS",
    "POLICIES",
    "SERVICES",
]
