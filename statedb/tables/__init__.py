"""The catalogue of l2announcer's tables: one module per table, read by the agent, l2dbg and the
tests alike. ``CATALOGUE`` maps the name users type to its definition, in l2dbg's listing order.
"""

from __future__ import annotations

from typing import Any

from statedb.table import Table
from statedb.tables.config import CONFIG
from statedb.tables.devices import DEVICES
from statedb.tables.health import HEALTH
from statedb.tables.l2_announce import L2_ANNOUNCE
from statedb.tables.leases import LEASES
from statedb.tables.nodes import NODES
from statedb.tables.pods import PODS
from statedb.tables.policies import POLICIES
from statedb.tables.services import SERVICES

CATALOGUE: dict[str, Table[Any]] = {
    t.name: t
    for t in (CONFIG, DEVICES, HEALTH, L2_ANNOUNCE, LEASES, NODES, PODS, POLICIES, SERVICES)
}

__all__ = [
    "CATALOGUE",
    "CONFIG",
    "DEVICES",
    "HEALTH",
    "L2_ANNOUNCE",
    "LEASES",
    "NODES",
    "PODS",
    "POLICIES",
    "SERVICES",
]
