"""Kubernetes objects -> table rows, and the list/watch sources the agent reflects.

Each mapping reduces an object to what the announcement decisions read. Services carrying the
``service.kubernetes.io/service-proxy-name`` label belong to another proxy and are not listed at
all, as Cilium's service watcher leaves them out.
"""

from __future__ import annotations

from typing import Any

from agent.k8s.leases import LEASE_MAPPING
from agent.k8s.reflector import KubernetesSource, Obj, RowMapping
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


def _ns_name(o: Obj) -> tuple[str, str]:
    m = _meta(o)
    return (m.get("namespace", ""), m.get("name", ""))


def _name(o: Obj) -> tuple[str]:
    return (_meta(o).get("name", ""),)


SERVICE_MAPPING = RowMapping(SERVICES, service_row, _ns_name)
NODE_MAPPING = RowMapping(NODES, node_row, _name)
POLICY_MAPPING = RowMapping(POLICIES, policy_row, _name)
POD_MAPPING = RowMapping(PODS, pod_row, _ns_name)


def sources(api_client: Any, node_name: str, namespace: str) -> dict[str, KubernetesSource]:
    """The list/watch sources of every reflected kind (by table name)."""
    import kubernetes

    core = kubernetes.client.CoreV1Api(api_client)
    custom = kubernetes.client.CustomObjectsApi(api_client)
    coordination = kubernetes.client.CoordinationV1Api(api_client)
    return {
        "services": KubernetesSource(
            "services",
            core.list_service_for_all_namespaces,
            label_selector=f"!{SERVICE_PROXY_NAME_LABEL}",
        ),
        "nodes": KubernetesSource(
            "nodes", core.list_node, field_selector=f"metadata.name={node_name}"
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
    }


MAPPINGS: dict[str, RowMapping[Any]] = {
    "services": SERVICE_MAPPING,
    "nodes": NODE_MAPPING,
    "policies": POLICY_MAPPING,
    "pods": POD_MAPPING,
    "leases": LEASE_MAPPING,
}
