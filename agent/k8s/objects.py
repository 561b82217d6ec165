"""Kubernetes objects -> table rows, and the list/watch sources the agent reflects.

Each mapping reduces an object to what the announcement decisions read. Services carrying the
``service.kubernetes.io/service-proxy-name`` label belong to another proxy and are not listed at
all, as Cilium's service watcher leaves them out.
"""

from __future__ import annotations

from typing import Any

from agent.k8s.leases import LEASE_MAPPING
from agent.k8s.reflector import KubernetesSource, Obj, RowMapping
from agent.service_conditions import CONFLICT as CONFLICT_CONDITION
from common.tables.endpoint_slices import ENDPOINT_SLICES, EndpointSlice
from common.tables.nodes import NODES, Node
from common.tables.pods import PODS, Pod
from common.tables.policies import POLICIES, Policy
from common.tables.services import SERVICES, Service

POLICY_GROUP, POLICY_VERSION, POLICY_PLURAL = (
    "cilium.io",
    "v2alpha1",
    "ciliuml2announcementpolicies",
)
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ENDPOINT_SLICE_SELECTOR = f"{SERVICE_NAME_LABEL},!{HEADLESS_LABEL},!{SERVICE_PROXY_NAME_LABEL}"
"""The slices the gates may ask about: those of a named Service that is neither headless (no
load-balancer IP to announce) nor another proxy's (not in the services table), as kube-proxy
selects them."""


def _meta(o: Obj) -> dict[str, Any]:
    return dict(o.get("metadata") or {})


def _labels(o: Obj) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (_meta(o).get("labels") or {}).items()))


def service_row(o: Obj) -> Service | None:
    m, spec = _meta(o), o.get("spec") or {}
    ingress = ((o.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = spec.get("externalIPs")
    return Service(
        namespace=m.get("namespace", ""),
        name=m.get("name", ""),
        labels=_labels(o),
        type=spec.get("type") or "ClusterIP",
        load_balancer_class=spec.get("loadBalancerClass") or "",
        external_ips=None if external is None else tuple(str(x) for x in external),
        load_balancer_ips=tuple(str(i["ip"]) for i in ingress if i.get("ip")),
        external_traffic_policy=spec.get("externalTrafficPolicy") or "Cluster",
        resource_version=str(m.get("resourceVersion", "")),
        uid=str(m.get("uid") or ""),
        conflict_condition=next(
            (
                str(c.get("status") or "")
                for c in (o.get("status") or {}).get("conditions") or []
                if c.get("type") == CONFLICT_CONDITION
            ),
            "",
        ),
    )


def node_row(o: Obj) -> Node | None:
    return Node(_meta(o).get("name", ""), _labels(o))


def policy_row(o: Obj) -> Policy | None:
    m, spec = _meta(o), o.get("spec") or {}
    return Policy(
        name=m.get("name", ""),
        generation=int(m.get("generation") or 0),
        service_selector=spec.get("serviceSelector"),
        node_selector=spec.get("nodeSelector"),
        interfaces=tuple(str(i) for i in spec.get("interfaces") or ()),
        external_ips=bool(spec.get("externalIPs")),
        load_balancer_ips=bool(spec.get("loadBalancerIPs")),
        ip_families=tuple(str(f) for f in spec.get("ipFamilies") or ()),
        conditions=(o.get("status") or {}).get("conditions"),
        resource_version=str(m.get("resourceVersion", "")),
    )


def pod_row(o: Obj) -> Pod | None:
    m, spec, status = _meta(o), o.get("spec") or {}, o.get("status") or {}
    ips = [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]
    return Pod(
        namespace=m.get("namespace", ""),
        name=m.get("name", ""),
        node_name=spec.get("nodeName") or "",
        ips=tuple(str(ip) for ip in ips if ip),
        host_network=bool(spec.get("hostNetwork")),
        uid=str(m.get("uid") or ""),
    )


def endpoint_slice_row(o: Obj) -> EndpointSlice | None:
    m = _meta(o)
    service = (m.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service:
        return None  # belongs to no Service: no gate can ask about it
    nodes: set[str] = set()
    endpoints = o.get("endpoints") or []
    ready = terminating = without_node = 0
    for e in endpoints:
        c = e.get("conditions") or {}
        # An absent condition is "unknown": ready and serving then count as true, terminating
        # as false, as kube-proxy reads them (it decides where the traffic goes).
        is_ready = c.get("ready") is not False
        serving = c.get("serving") is not False
        if is_ready:
            ready += 1
        elif serving and c.get("terminating") is True:
            terminating += 1
        else:
            continue
        node = e.get("nodeName") or ""
        if node:
            nodes.add(node)
        else:
            without_node += 1
    return EndpointSlice(
        namespace=m.get("namespace", ""),
        name=m.get("name", ""),
        service=str(service),
        address_type=str(o.get("addressType") or ""),
        nodes=tuple(sorted(nodes)),
        endpoints=len(endpoints),
        ready=ready,
        terminating=terminating,
        without_node=without_node,
    )


def _ns_name(o: Obj) -> tuple[str, str]:
    m = _meta(o)
    return (m.get("namespace", ""), m.get("name", ""))


def _name(o: Obj) -> tuple[str]:
    return (_meta(o).get("name", ""),)


SERVICE_MAPPING = RowMapping(SERVICES, service_row, _ns_name)
NODE_MAPPING = RowMapping(NODES, node_row, _name)
POLICY_MAPPING = RowMapping(POLICIES, policy_row, _name)
POD_MAPPING = RowMapping(PODS, pod_row, _ns_name)
# Optional: an agent whose RBAC lacks endpointslices (an image upgraded without its manifests)
# still announces, as before it read them, instead of waiting for a table nobody can fill.
ENDPOINT_SLICE_MAPPING = RowMapping(ENDPOINT_SLICES, endpoint_slice_row, _ns_name, optional=True)


def sources(
    api_client: Any, node_name: str, namespace: str, all_nodes: bool = False
) -> dict[str, KubernetesSource]:
    """The list/watch sources of every reflected kind (by table name). ``all_nodes``: every
    Node, not only this one (placement matches policies' node selectors on the other nodes'
    labels); one watch of all Nodes per agent, whose events are the Nodes' own updates."""
    import kubernetes

    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)
    coordination = kubernetes.client.CoordinationV1Api(api_client)
    discovery = kubernetes.client.DiscoveryV1Api(api_client)
    return {
        "services": KubernetesSource(
            "services",
            core.list_service_for_all_namespaces,
            label_selector=f"!{SERVICE_PROXY_NAME_LABEL}",
        ),
        "nodes": KubernetesSource(
            "nodes",
            core.list_node,
            field_selector=None if all_nodes else f"metadata.name={node_name}",
        ),
        "policies": KubernetesSource(
            f"{POLICY_PLURAL}.{POLICY_GROUP}",
            custom.list_cluster_custom_object,
            POLICY_GROUP,
            POLICY_VERSION,
            POLICY_PLURAL,
        ),
        "pods": KubernetesSource(
            "pods",
            core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={node_name}",
        ),
        "leases": KubernetesSource("leases", coordination.list_namespaced_lease, namespace),
        "endpointslices": KubernetesSource(
            "endpointslices.discovery.k8s.io",
            discovery.list_endpoint_slice_for_all_namespaces,
            label_selector=ENDPOINT_SLICE_SELECTOR,
        ),
    }


MAPPINGS: dict[str, RowMapping[Any]] = {
    "services": SERVICE_MAPPING,
    "nodes": NODE_MAPPING,
    "policies": POLICY_MAPPING,
    "pods": POD_MAPPING,
    "leases": LEASE_MAPPING,
    "endpointslices": ENDPOINT_SLICE_MAPPING,
}
