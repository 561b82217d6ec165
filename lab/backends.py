"""Backends of the lab's Services: where their endpoints are, and their external traffic policy.

The lab's Services have no selector and the lab runs no kubelet or pods, so nothing writes their
EndpointSlices. ``l2lab backend`` writes one slice per Service itself, as a controller would: the
slice carries ``kubernetes.io/service-name`` (which ties it to the Service) and
``endpointslice.kubernetes.io/managed-by`` set to the lab's own value, so that
kube-controller-manager's EndpointSlice controllers leave it alone. Each endpoint stands for a pod
on a node: its address is the node's own (where the lab's HTTP responder listens), its
``nodeName`` the node. The slice is applied server-side in one request, so a move from one node to
another is one watch event, as when a controller replaces a pod's endpoint.
"""

from __future__ import annotations

import json
from typing import Any

from lab import netns
from lab.inventory import LabState, node_ip
from lab.netns import LabError

MANAGED_BY = "l2lab.l2announcer.io"
"""The lab's ``endpointslice.kubernetes.io/managed-by``: not kube-controller-manager's
(``endpointslice-controller.k8s.io``, ``endpointslicemirroring-controller.k8s.io``)."""
NAMESPACE = "default"
POLICIES = ("Cluster", "Local")


def slice_name(service: str) -> str:
    return f"{service}-l2lab"


CONDITIONS = {
    "ready": {"ready": True, "serving": True, "terminating": False},
    "not-ready": {"ready": False, "serving": False, "terminating": False},
    # a pod being deleted that still takes connections until it ends
    "terminating": {"ready": False, "serving": True, "terminating": True},
}


def endpoint_slice(
    service: str, nodes: list[str], *, condition: str = "ready", node_name: bool = True
) -> dict[str, Any]:
    """The lab's EndpointSlice of ``service``: one endpoint per node in ``nodes``."""
    endpoints = []
    for node in nodes:
        endpoint: dict[str, Any] = {
            "addresses": [node_ip(int(node.removeprefix("node")))],
            "conditions": dict(CONDITIONS[condition]),
        }
        if node_name:
            endpoint["nodeName"] = node
        endpoints.append(endpoint)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(service),
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }


def _check(state: LabState, service: str, nodes: list[str]) -> None:
    if service not in state.vips():
        raise LabError(
            f"no Service {service!r} in lab {state.name!r} (Services: {', '.join(state.vips())})"
        )
    unknown = [n for n in nodes if n not in state.node_names()]
    if unknown:
        raise LabError(
            f"no node {unknown[0]!r} in lab {state.name!r} (nodes: {', '.join(state.node_names())})"
        )


def _kubectl(state: LabState, *args: str, input: str | None = None) -> str:
    return netns.run(
        [str(state.kubectl_path), f"--kubeconfig={state.admin_kubeconfig}", *args],
        timeout=60,
        input=input,
    )


def set_backends(
    state: LabState,
    service: str,
    nodes: list[str],
    *,
    condition: str = "ready",
    node_name: bool = True,
) -> str:
    """Write ``service``'s slice: endpoints on ``nodes`` (none: a slice without endpoints), each
    ``condition`` (ready, not-ready, terminating). Returns one line saying what it now holds."""
    _check(state, service, nodes)
    if condition not in CONDITIONS:
        raise LabError(f"endpoint condition {condition!r}: use one of {', '.join(CONDITIONS)}")
    obj = endpoint_slice(service, nodes, condition=condition, node_name=node_name)
    _kubectl(
        state, "apply", "--server-side", "--field-manager=l2lab", "--force-conflicts", "-f", "-",
        input=json.dumps(obj),
    )  # fmt: skip
    name = f"EndpointSlice {NAMESPACE}/{slice_name(service)}"
    if not nodes:
        return f"{service}: no endpoints ({name})"
    where = ", ".join(nodes) + ("" if node_name else " (without nodeName)")
    return f"{service}: endpoints on {where}, {condition} ({name})"


def set_traffic_policy(state: LabState, service: str, policy: str) -> str:
    """Set ``spec.externalTrafficPolicy`` of ``service`` (Cluster or Local, any case)."""
    _check(state, service, [])
    wanted = {p.lower(): p for p in POLICIES}.get(policy.lower())
    if wanted is None:
        raise LabError(f"external traffic policy {policy!r}: use one of {', '.join(POLICIES)}")
    patch = json.dumps({"spec": {"externalTrafficPolicy": wanted}})
    _kubectl(state, "patch", "service", service, "-n", NAMESPACE, "--type=merge", "-p", patch)
    return f"{service}: externalTrafficPolicy {wanted}"
