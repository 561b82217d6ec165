"""Table ``leases``: the agent's Leases (``cilium-l2announce-*`` in its namespace), as watched.
Followers learn of renewals and releases from here instead of polling the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from statedb.table import Table


@dataclass(frozen=True, slots=True)
class Lease:
    name: str
    holder: str = ""
    duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0
    resource_version: str = ""


def _json(x: Lease) -> dict[str, Any]:
    return {
        "Name": x.name,
        "HolderIdentity": x.holder,
        "LeaseDurationSeconds": x.duration_seconds,
        "AcquireTime": x.acquire_time,
        "RenewTime": x.renew_time,
        "LeaseTransitions": x.transitions,
        "ResourceVersion": x.resource_version,
    }


LEASES: Table[Lease] = Table(
    name="leases",
    sql_name="leases",
    row_type=Lease,
    primary_key=("name",),
    indexes={"holder": ("holder",)},
    header=("Name", "Holder", "Duration", "RenewTime", "Transitions"),
    format_row=lambda x: (
        x.name,
        x.holder,
        f"{x.duration_seconds}s",
        x.renew_time,
        str(x.transitions),
    ),
    to_json=_json,
    doc="The agent's Leases, one per announced Service.",
)
