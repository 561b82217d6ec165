"""The endpoints gate: a Service is announced from where its traffic can be delivered.

``externalTrafficPolicy: Local`` means the node that receives the traffic must hand it to an
endpoint on itself (kube-proxy drops it otherwise, to keep the client's source address). So for
a Local Service a node contests the lease only while it has a usable endpoint of the Service: a
ready one, or one serving while terminating (the endpoints table's ``usable``). When the holder's
last one goes, its refusal releases the lease at once (the planned handover) and a node that has
one takes it.

Endpoints without ``nodeName`` (slices written by hand or by a controller that leaves it out)
cannot be placed on a node, and kube-proxy never counts them as local either:

- when *every* usable endpoint of a Local Service lacks it, no node can deliver as Local asks,
  and every node refuses with ``endpoints-without-node``: a cluster-wide reason the Service's
  condition shows, instead of a Service that is silently dark;
- when only *some* lack it, the nodes with a named endpoint announce (they deliver to their own
  endpoints, as kube-proxy would); the others' ``no-local-endpoint`` detail counts the unnamed
  ones, so they are visible, not dropped.

``announce-without-endpoints`` decides what happens to a Service with no usable endpoint on any
node, Cluster or Local alike. True (the default, and this agent's behaviour before it read
EndpointSlices): it is announced as usual, so clients reach a node that answers at once (kube-proxy
rejects connections to a Service without endpoints) instead of waiting on ARP, and the lease does
not move while every pod restarts at once. False (as MetalLB does): nobody announces it, with the
cluster-wide reason ``no-ready-endpoint``, and it is announced again once an endpoint is ready.
``Cluster`` Services are otherwise not affected by this gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.announcer.gates import GateView, Refusal
from common.tables.endpoint_slices import ENDPOINT_SLICES, ENDPOINT_SLICES_BY_SERVICE, Backends
from common.tables.l2_announce import Origin
from common.tables.services import Service
from statedb import Table

LOCAL = "Local"
NODES_SHOWN = 3
"""How many nodes with endpoints a refusal's detail names (then "and N more")."""


class EndpointsGate:
    """Refuses a Local Service on a node without a usable local endpoint, and (with
    ``announce_without_endpoints`` off) any Service without a usable endpoint anywhere."""

    name = "endpoints"
    tables: tuple[Table[Any], ...] = (ENDPOINT_SLICES,)

    def __init__(self, announce_without_endpoints: bool = True) -> None:
        self.announce_without_endpoints = announce_without_endpoints

    def check(
        self,
        service: Service,
        entries: Mapping[tuple[str, str], Origin],
        view: GateView,
    ) -> Refusal | None:
        local = service.external_traffic_policy == LOCAL
        if not local and self.announce_without_endpoints:
            return None  # nothing to ask: a Cluster Service is announced as it always was
        key = f"{service.namespace}/{service.name}"
        backends = Backends.of(
            view.read.list(ENDPOINT_SLICES_BY_SERVICE, service.namespace, service.name)
        )
        if backends.usable == 0:
            if self.announce_without_endpoints:
                return None
            return Refusal(
                "no-ready-endpoint",
                f"no endpoint of {key} is ready (or serving while terminating) on any node, and "
                "announce-without-endpoints is false",
                cluster_wide=True,
            )
        if not local or view.node_name in backends.nodes:
            return None
        if not backends.nodes:
            return Refusal(
                "endpoints-without-node",
                f"externalTrafficPolicy is Local but none of the {backends.usable} ready "
                f"endpoint(s) of {key} has a nodeName, so no node has a local one; set nodeName "
                "on the endpoints, or use externalTrafficPolicy Cluster",
                cluster_wide=True,
            )
        detail = (
            f"externalTrafficPolicy is Local and {view.node_name} has no ready endpoint of {key} "
            f"(ready on {_nodes(backends.nodes)})"
        )
        if backends.without_node:
            detail += f"; {backends.without_node} endpoint(s) without nodeName are on no node"
        return Refusal("no-local-endpoint", detail)


def _nodes(nodes: frozenset[str]) -> str:
    names = sorted(nodes)
    shown = ", ".join(names[:NODES_SHOWN])
    if len(names) > NODES_SHOWN:
        shown += f" and {len(names) - NODES_SHOWN} more"
    return shown
