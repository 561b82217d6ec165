"""Table ``health``: the health of each of the agent's modules and jobs, as last published.

``level`` is OK, Degraded, Starting or Stopped; ``since`` is when the level last changed, so an
operator can tell a blip from a module that has been degraded for an hour. ``updated`` is when the
row was last written; the ``agent`` row (``HEARTBEAT``) is rewritten every second as a heartbeat,
which is what the liveness probe checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from statedb.table import Table

HEARTBEAT = "agent"
"""The row the agent rewrites at every publish, whatever its modules' levels: its age tells the
liveness probe whether the agent still runs."""


@dataclass(frozen=True, slots=True)
class Health:
    module: str
    level: str = "Starting"
    message: str = ""
    since: float = 0.0  # wall-clock seconds since the epoch
    updated: float = 0.0  # wall-clock seconds since the epoch


def _ago(since: float) -> str:
    if not since:
        return ""
    secs = max(0, int(time.time() - since))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    return f"{secs // 3600}h"


def _json(h: Health) -> dict[str, Any]:
    return {
        "Module": h.module,
        "Level": h.level,
        "Message": h.message,
        "Since": h.since,
        "Updated": h.updated,
    }


HEALTH: Table[Health] = Table(
    name="health",
    sql_name="health",
    row_type=Health,
    primary_key=("module",),
    header=("Module", "Level", "Since", "Message"),
    format_row=lambda h: (h.module, h.level, _ago(h.since), h.message),
    to_json=_json,
    doc="Health of each of the agent's modules and jobs.",
)
