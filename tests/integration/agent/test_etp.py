"""externalTrafficPolicy Local and announce-without-endpoints with real ``l2agent`` processes on
the real kube-apiserver (shipped RBAC, no datapath): the EndpointSlices reflector, the endpoints
gate, the lease and the Service's ``l2announcer.io/Announced`` condition."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import client

from agent.k8s.objects import SERVICE_NAME_LABEL
from tests.integration.agent.cluster import CLUSTER_ROLE, Cluster, agent_roles, until
from tests.kube import Kube

ANNOUNCED = "l2announcer.io/Announced"
MANAGED_BY = "test.l2announcer.io"  # not kube-controller-manager's: it leaves the slice alone


def put_slice(kube: Kube, cluster: Cluster, service: str, *nodes: str, named: bool = True) -> None:
    """The one EndpointSlice of ``service``: a ready endpoint on each of ``nodes`` (logical)."""
    endpoints: list[dict[str, Any]] = []
    for i, node in enumerate(nodes):
        e: dict[str, Any] = {"addresses": [f"10.0.0.{i + 1}"], "conditions": {"ready": True}}
        if named:
            e["nodeName"] = cluster.real(node)
        endpoints.append(e)
    body = {
        "metadata": {
            "name": f"{service}-1",
            "labels": {
                SERVICE_NAME_LABEL: service,
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
    }
    try:
        old: Any = kube.discovery.read_namespaced_endpoint_slice(f"{service}-1", kube.namespace)
    except client.ApiException:
        kube.discovery.create_namespaced_endpoint_slice(kube.namespace, body)  # type: ignore[arg-type]
        return
    body["metadata"]["resourceVersion"] = old.metadata.resource_version  # type: ignore[index]
    kube.discovery.replace_namespaced_endpoint_slice(f"{service}-1", kube.namespace, body)  # type: ignore[arg-type]


def announced(kube: Kube, service: str) -> tuple[str, str]:
    """The Service's Announced condition: (status, reason), ("", "") while it has none."""
    svc: Any = kube.core.read_namespaced_service_status(service, kube.namespace)
    for c in (svc.status and svc.status.conditions) or []:
        if c.type == ANNOUNCED:
            return (c.status, c.reason)
    return ("", "")


def make_local(kube: Kube, service: str) -> None:
    kube.core.patch_namespaced_service(
        service, kube.namespace, {"spec": {"externalTrafficPolicy": "Local"}}
    )


def test_a_local_service_follows_its_endpoint_and_says_why_when_no_node_can_serve(
    cluster: Cluster, kube: Kube
) -> None:
    ip_of = cluster.services(1)
    (lease,) = ip_of
    make_local(kube, "service-1")
    put_slice(kube, cluster, "service-1", "node3")
    for node in ("node1", "node2", "node3"):
        cluster.start_agent(node)
    until(lambda: cluster.holder(lease) == "node3", 30, "node3, the node with the endpoint, holds")
    until(lambda: announced(kube, "service-1") == ("True", "Announcing"), 10, "Announced")
    assert cluster.announced("node1") == cluster.announced("node2") == set()

    put_slice(kube, cluster, "service-1", "node1")  # the endpoint moves to node1
    until(lambda: cluster.holder(lease) == "node1", 10, "the lease follows the endpoint")
    until(lambda: cluster.announced("node3") == set(), 5, "node3 withdrawn")

    # Endpoints without nodeName: no node has a local one, and the Service says so.
    put_slice(kube, cluster, "service-1", "node2", named=False)
    until(
        lambda: announced(kube, "service-1") == ("False", "EndpointsWithoutNode"),
        10,
        "the Announced condition names the cause",
    )
    until(lambda: cluster.holder(lease) == "", 10, "the lease released")
    assert all(not cluster.announced(n) for n in ("node1", "node2", "node3"))


def test_without_ready_endpoints_a_service_is_dark_only_when_configured(
    cluster: Cluster, kube: Kube
) -> None:
    ip_of = cluster.services(1)
    (lease,) = ip_of
    for node in ("node1", "node2"):
        cluster.start_agent(node, extra=["--announce-without-endpoints=false"])
    until(
        lambda: announced(kube, "service-1") == ("False", "NoReadyEndpoint"),
        30,
        "the Announced condition says no endpoint is ready",
    )
    assert cluster.holder(lease) == ""
    put_slice(kube, cluster, "service-1", "node2")  # a Cluster Service: any node will do
    until(lambda: cluster.holder(lease) in ("node1", "node2"), 10, "announced once one is ready")
    until(lambda: announced(kube, "service-1") == ("True", "Announcing"), 10, "Announced")


def test_an_agent_without_the_endpointslices_rule_still_announces(
    cluster: Cluster, kube: Kube
) -> None:
    """An image upgraded without its RBAC: the agent cannot list EndpointSlices, says so, and
    announces as it did before it read them instead of waiting for them."""
    role = yaml.safe_load(CLUSTER_ROLE.read_text())
    role["rules"] = [r for r in role["rules"] if "endpointslices" not in r["resources"]]
    role["metadata"] = {"name": kube.name("no-endpointslices")}
    kube.cp.apply(role)
    kube.on_cleanup(lambda: kube.rbac.delete_cluster_role(role["metadata"]["name"]))
    (_, ours), namespaced = agent_roles(kube)
    assert ours != role["metadata"]["name"]
    cluster.kubeconfigs["node1"] = kube.service_account(
        "node1", [("ClusterRole", role["metadata"]["name"]), namespaced]
    )
    ip_of = cluster.services(1)
    (lease,) = ip_of
    cluster.start_agent("node1")
    until(lambda: cluster.holder(lease) == "node1", 30, "announced without EndpointSlices")
    until(
        lambda: "going on without endpointslices.discovery.k8s.io" in cluster.log_text("node1"),
        10,
        "the agent says what it goes on without",
    )
