"""The cluster-wide story of a Service on the Service itself: its status conditions.

The Lease names the holder at every moment and each node's ``l2-contest`` table says why it does
not contest; what neither shows is, from ``kubectl describe svc`` alone, whether the Service is
announced at all and, when it is dark, why. Two conditions say it:

``l2announcer.io/Announced``
    True (reason ``Announcing``) written by a node when it starts announcing the Service.
    False written by the holder when a gate makes it stop (reason: the gate's, in CamelCase, e.g.
    ``InterfaceDown``; the message names the node and the cause), and by every node when the
    cause is cluster-wide (``NoReadyEndpoint``, ``EndpointsWithoutNode``) and nobody holds the
    lease: all nodes reach the same verdict from the same objects, and the write is skipped when
    the Service already says it. A node that crashes writes nothing: its successor's True
    replaces its True, and the Lease is always the authority on who holds it.
``l2announcer.io/Conflict``
    Written by the holder's conflict detector (agent/conflicts): True while another MAC answers
    for one of the Service's addresses, False once it is gone.

Only ``status.conditions`` is written (the ``services/status`` subresource); the Service's spec and
metadata never are. Writes go out off the caller's thread, latest value per (Service, condition)
only (agent/latest_writer.py), and the Kubernetes side reads the Service first so that a
condition already saying the same thing is not written again
(agent/k8s/service_conditions.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.latest_writer import LatestWriter
from agent.logfmt import fields
from common.tables.contest import ContestEntry, ContestState

log = logging.getLogger("l2announcer.service-conditions")

ANNOUNCED = "l2announcer.io/Announced"
CONFLICT = "l2announcer.io/Conflict"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str
    only_over: str = ""
    """When set, written only while the Service's condition of this type still carries this
    message: a node that stops announcing replaces its own claim, never its successor's (the
    two writes race when a lease moves within milliseconds)."""


# (namespace, name, condition): make the Service's condition of that type say this
WriteCondition = Callable[[str, str, Condition], None]


def camel(code: str) -> str:
    """``no-local-endpoint`` -> ``NoLocalEndpoint``: a condition reason is CamelCase."""
    return "".join(part[:1].upper() + part[1:] for part in code.split("-") if part)


def announced_condition(
    node: str, old: ContestEntry | None, new: ContestEntry, cluster_wide: bool
) -> Condition | None:
    """What a change of this node's ``l2-contest`` row means for the Announced condition, or
    None when this node has nothing to say (another node's part, or nothing changed)."""
    was_holding = old is not None and old.state in (ContestState.ANNOUNCING, ContestState.IDLE)
    if new.state == ContestState.ANNOUNCING:
        if old is not None and old.state == ContestState.ANNOUNCING:
            return None
        return Condition(ANNOUNCED, True, "Announcing", f"announced from node {node}")
    if new.state == ContestState.REFUSED:
        if was_holding:
            return Condition(
                ANNOUNCED,
                False,
                camel(new.reason),
                f"node {node} stopped announcing: {new.detail}",
                only_over="" if cluster_wide else f"announced from node {node}",
            )
        if cluster_wide and not new.holder and (old is None or old != new):
            return Condition(ANNOUNCED, False, camel(new.reason), new.detail)
    return None


class ServiceConditions:
    """The one writer of l2announcer's Service conditions on this node."""

    def __init__(self, write: WriteCondition) -> None:
        self._write = write
        self._writer: LatestWriter[tuple[str, str, str], Condition] = LatestWriter(
            "service-conditions",
            lambda key, c: self._write(key[0], key[1], c),
            self._failed,
            essence=lambda c: (c.status, c.reason, c.message),
        )
        self.name = self._writer.name
        self.health = self._writer.health

    def set(
        self, namespace: str, name: str, type_: str, status: bool, reason: str, message: str
    ) -> None:
        self._writer.submit((namespace, name, type_), Condition(type_, status, reason, message))

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self._writer.stop()

    @staticmethod
    def _failed(key: tuple[str, str, str], e: Exception) -> None:
        log.warning(
            "Could not write a service condition",
            extra=fields(service=f"{key[0]}/{key[1]}", condition=key[2], error=str(e)),
        )
