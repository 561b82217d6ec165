"""Gates: whether this node may contest a Service's lease at all.

A policy says which Services a node *should* announce; a gate says whether it *can* serve one
right now. The announcer asks every gate for every selected Service on each pass; the first
refusal wins, the node then does not campaign for that lease (and releases it if held, which is
the planned-handover path, so a node that can serve takes over at once). When the cause clears,
the next pass campaigns again; a lease held meanwhile by another node stays there (sticky), so a
cause that comes and goes does not move the Service back and forth.

A gate reads state-database tables only (never the API, netlink or the BPF map directly): the
announcer recomputes when one of a gate's tables changes, and waits until all of them are
initialized before its first pass, so a restarting agent never releases a lease because a table
was still empty.

The refusals end up in the ``l2-contest`` table (one row per Service: contesting or not, and why),
which ``l2dbg statedb l2-contest`` shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from common.tables.l2_announce import Origin
from common.tables.services import Service
from statedb import Table
from statedb.read_txn import Reader

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
"""The well-known label that takes a node out of external load balancing (any value)."""


@dataclass(frozen=True)
class Refusal:
    """Why this node does not contest a Service."""

    reason: str
    """A short kebab-case code, stable for scripts: ``excluded-node``, ``no-local-endpoint``."""
    detail: str
    """One line for humans: what was found and what would change it."""
    cluster_wide: bool = False
    """True when every node reaches the same verdict from the same objects (no ready endpoint
    anywhere, endpoints without a node name): then nobody announces the Service, and its
    condition says so."""


@dataclass(frozen=True)
class GateView:
    """What a gate may look at, valid only during the pass that hands it over."""

    node_name: str
    node_labels: Mapping[str, str]
    read: Reader
    """The announcer's read transaction: every gate of a pass sees the same snapshot."""


class Gate(Protocol):
    name: str
    tables: tuple[Table[Any], ...]
    """The tables ``check`` reads: the announcer waits for them to be initialized and
    recomputes when one changes. A gate may also name ``optional_tables``, a subset waited for
    only ``optional_wait`` seconds from start (it must then decide, safely, without them)."""

    def check(
        self,
        service: Service,
        entries: Mapping[tuple[str, str], Origin],
        view: GateView,
    ) -> Refusal | None:
        """``entries``: the (IP, interface) pairs this node would announce for ``service``."""
        ...


class ExcludedNode:
    """A node labelled ``node.kubernetes.io/exclude-from-external-load-balancers`` (as the
    cloud providers' load balancers read it) contests nothing."""

    name = "excluded-node"
    tables: tuple[Table[Any], ...] = ()  # the Node row is read by the announcer itself

    def check(
        self,
        service: Service,
        entries: Mapping[tuple[str, str], Origin],
        view: GateView,
    ) -> Refusal | None:
        if EXCLUDE_LABEL not in view.node_labels:
            return None
        return Refusal(
            "excluded-node",
            f"node {view.node_name} carries the label {EXCLUDE_LABEL}; remove it to announce here",
        )


def default_gates(
    *, endpoints: bool = False, announce_without_endpoints: bool = True, fence: bool = False
) -> list[Gate]:
    """The gates of a running agent, in the order their refusals are preferred.
    ``endpoints``: the endpoints gate (gate_etp.py); its table is filled by the EndpointSlices
    reflector, which the agent runs, so without it the announcer would wait forever.
    ``announce_without_endpoints``: the configuration key of that name (gate_etp.py).
    ``fence``: self-fencing (gate_fence.py); its table is written by the link fence and the
    responder's verifier, which the agent runs, so without them it would wait forever."""
    from agent.announcer.gate_etp import EndpointsGate  # it imports this module's types
    from agent.announcer.gate_fence import FenceGate

    gates: list[Gate] = [ExcludedNode()]
    if endpoints:
        gates.append(EndpointsGate(announce_without_endpoints))
    if fence:
        gates.append(FenceGate())
    return gates


def first_refusal(
    gates: Sequence[Gate],
    service: Service,
    entries: Mapping[tuple[str, str], Origin],
    view: GateView,
) -> Refusal | None:
    for gate in gates:
        refusal = gate.check(service, entries, view)
        if refusal is not None:
            return refusal
    return None
