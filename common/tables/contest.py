"""Table ``l2-contest`` (SQL ``l2_contest``): for each Service that has an address to announce,
whether this node contests its lease, and if not, why. Written by the l2-announcer on every pass.

It answers the operator's first question about a dark VIP, "why does this node not announce
it?", on the node itself: not selected by any policy here, a gate's refusal (no local endpoint,
interface down, excluded node, ...), or contesting but another node holds the lease.
Primary key: (namespace, name). Index ``state``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from statedb.table import Table


class ContestState(enum.StrEnum):
    ANNOUNCING = "announcing"
    """This node holds the lease and answers for the Service's addresses."""
    IDLE = "idle"
    """This node holds the lease but has nothing to answer for (no matching interface, ...)."""
    STANDBY = "standby"
    """Contesting; the lease is held by another node (``holder``) or not yet taken."""
    REFUSED = "refused"
    """Selected here, but a gate says this node cannot serve it (``reason``)."""
    NOT_SELECTED = "not-selected"
    """No policy selects the Service for this node."""


@dataclass(frozen=True, slots=True)
class ContestEntry:
    namespace: str
    name: str
    state: str = ContestState.NOT_SELECTED
    """A :class:`ContestState` value (stored as its text)."""
    reason: str = ""
    """A stable code: a gate's refusal (``excluded-node``, ``no-local-endpoint``, ...),
    ``not-selected``, ``held-by-other``, ``nothing-to-announce``, ``follows-lease`` (a Service
    that shares an address follows its group leader's lease, in any state); otherwise empty while
    announcing."""
    holder: str = ""
    """The lease holder as this node last saw it, or empty."""
    detail: str = ""

    @property
    def contesting(self) -> bool:
        return self.state in (ContestState.ANNOUNCING, ContestState.IDLE, ContestState.STANDBY)


def _row(e: ContestEntry) -> tuple[str, ...]:
    return (
        f"{e.namespace}/{e.name}",
        "yes" if e.contesting else "no",
        e.state,
        e.reason,
        e.holder,
        e.detail,
    )


def _json(e: ContestEntry) -> dict[str, Any]:
    return {
        "Namespace": e.namespace,
        "Name": e.name,
        "Contesting": e.contesting,
        "State": str(e.state),
        "Reason": e.reason,
        "Holder": e.holder,
        "Detail": e.detail,
    }


L2_CONTEST: Table[ContestEntry] = Table(
    name="l2-contest",
    sql_name="l2_contest",
    row_type=ContestEntry,
    primary_key=("namespace", "name"),
    indexes={"state": ("state",)},
    header=("Service", "Contesting", "State", "Reason", "Holder", "Detail"),
    format_row=_row,
    to_json=_json,
    doc="Per Service: whether this node contests its lease, and why not.",
)

L2_CONTEST_STATE = L2_CONTEST.index("state")
