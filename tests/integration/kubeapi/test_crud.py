"""CRUD semantics of spec §3 through the real client: return shapes, patch types, status
subresource rules, generation, defaulting, validation and pruning."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from lab.kubeapi.api import ApiConfig
from lab.kubeapi.server import KubeApiServer, ServerOptions
from tests.integration.kubeapi.conftest import make_client

GROUP, VERSION, PLURAL = "cilium.io", "v2alpha1", "ciliuml2announcementpolicies"


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def _service(name: str, **spec: Any) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, labels={"color": "blue"}),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)], **spec),
    )


def test_delete_return_shapes(
    core: client.CoreV1Api, custom: client.CustomObjectsApi, policy_crd: object
) -> None:
    core.create_namespaced_service("default", _service("web"))
    deleted = core.delete_namespaced_service("web", "default")
    assert isinstance(deleted, client.V1Service)
    assert deleted.metadata.name == "web"

    created = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, _policy("p1"))
    answer = custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "p1")
    assert answer == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "p1",
            "group": GROUP,
            "kind": PLURAL,
            "uid": created["metadata"]["uid"],
        },
    }


def test_custom_resource_patch_types(custom: client.CustomObjectsApi, policy_crd: object) -> None:
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, _policy("p1"))
    with pytest.raises(ApiException) as caught:
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            "p1",
            {"spec": {"externalIPs": True}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert caught.value.status == 415
    assert json.loads(caught.value.body)["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )
    with pytest.raises(ApiException) as caught:
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            "p1",
            [{"op": "add", "path": "/spec/externalIPs", "value": True}],
        )
    assert caught.value.status == 400
    patched = custom.patch_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        "p1",
        [{"op": "add", "path": "/spec/externalIPs", "value": True}],
        _content_type="application/json-patch+json",
    )
    assert patched["spec"]["externalIPs"] is True
    assert patched["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as caught:
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            "p1",
            [{"op": "remove", "path": "/spec/nothing"}],
            _content_type="application/json-patch+json",
        )
    assert caught.value.status == 422


def test_custom_resource_status_rules(custom: client.CustomObjectsApi, policy_crd: object) -> None:
    body = _policy("p1", interfaces=["^eth0$"])
    body["status"] = {"conditions": []}
    created = custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert "status" not in created  # dropped on create
    assert created["metadata"]["generation"] == 1
    rv = created["metadata"]["resourceVersion"]

    # main-resource PUT that only changes status: nothing happens
    only_status = {**created, "status": {"conditions": [_condition()]}}
    same = custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "p1", only_status)
    assert same["metadata"]["resourceVersion"] == rv
    assert "status" not in same

    # spec change: generation +1
    changed = {**created, "spec": {"interfaces": ["^eth1$"]}}
    after = custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "p1", changed)
    assert after["metadata"]["generation"] == 2

    # /status PUT that also changes spec: spec unchanged, status written, generation unchanged
    status_write = {
        **after,
        "spec": {"interfaces": ["^wlan0$"]},
        "status": {"conditions": [_condition()]},
    }
    written = custom.replace_cluster_custom_object_status(
        GROUP, VERSION, PLURAL, "p1", status_write
    )
    assert written["spec"] == {"interfaces": ["^eth1$"]}
    assert written["status"]["conditions"][0]["type"] == "io.cilium/bad-service-selector"
    assert written["metadata"]["generation"] == 2

    # /status without resourceVersion: 422; stale: 409
    no_rv = {
        **written,
        "metadata": {k: v for k, v in written["metadata"].items() if k != "resourceVersion"},
    }
    with pytest.raises(ApiException) as caught:
        custom.replace_cluster_custom_object_status(GROUP, VERSION, PLURAL, "p1", no_rv)
    assert caught.value.status == 422
    with pytest.raises(ApiException) as caught:
        custom.replace_cluster_custom_object_status(GROUP, VERSION, PLURAL, "p1", after)
    assert caught.value.status == 409

    # invalid condition reason: 422 naming the field
    bad = {**written, "status": {"conditions": [_condition(reason="not valid")]}}
    with pytest.raises(ApiException) as caught:
        custom.replace_cluster_custom_object_status(GROUP, VERSION, PLURAL, "p1", bad)
    assert caught.value.status == 422
    causes = json.loads(caught.value.body)["details"]["causes"]
    assert causes[0]["field"] == "status.conditions[0].reason"


def _condition(reason: str = "error") -> dict[str, Any]:
    return {
        "type": "io.cilium/bad-service-selector",
        "status": "True",
        "reason": reason,
        "message": "values: Invalid value",
        "lastTransitionTime": "2023-05-12T15:39:01Z",
        "observedGeneration": 1,
    }


def test_custom_resource_schema(
    server: KubeApiServer,
    api: client.ApiClient,
    custom: client.CustomObjectsApi,
    policy_crd: object,
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            _policy(
                "p1", serviceSelector={"matchExpressions": [{"key": "a", "operator": "Maybe"}]}
            ),
        )
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["details"]["causes"][0]["field"] == (
        "spec.serviceSelector.matchExpressions[0].operator"
    )
    with pytest.raises(ApiException) as caught:
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {"metadata": {"name": "x"}})
    assert caught.value.status == 400

    response = custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        _policy("p2", unknownField=1, externalIPs=True),
        _preload_content=False,
    )
    stored = json.loads(response.data)
    assert stored["spec"] == {"externalIPs": True}
    assert response.headers["Warning"] == '299 - "unknown field \\"spec.unknownField\\""'


def test_custom_resource_put_needs_resource_version_and_never_creates(
    custom: client.CustomObjectsApi, policy_crd: object
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "p1", _policy("p1"))
    assert caught.value.status == 404
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, _policy("p1"))
    with pytest.raises(ApiException) as caught:
        custom.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "p1", _policy("p1"))
    assert caught.value.status == 422


def test_group_is_404_until_crd_installed(
    server: KubeApiServer, custom: client.CustomObjectsApi
) -> None:
    with pytest.raises(ApiException) as caught:
        custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    assert caught.value.status == 404


def test_service_defaults_and_status_rules(core: client.CoreV1Api) -> None:
    body = _service("lb", type="LoadBalancer")
    body.status = client.V1ServiceStatus(
        load_balancer=client.V1LoadBalancerStatus(
            ingress=[client.V1LoadBalancerIngress(ip="10.0.10.1")]
        )
    )
    svc = core.create_namespaced_service("default", body)
    assert svc.status.load_balancer.ingress is None  # status reset on create
    spec = svc.spec
    assert spec.cluster_ip and spec.cluster_ips == [spec.cluster_ip]
    assert spec.ports[0].protocol == "TCP" and spec.ports[0].target_port == 80
    assert spec.ports[0].node_port and spec.external_traffic_policy == "Cluster"
    assert spec.session_affinity == "None" and spec.ip_families == ["IPv4"]

    svc.status = body.status
    svc.metadata.labels["extra"] = "yes"
    svc.spec.external_ips = ["192.0.2.1"]
    written = core.replace_namespaced_service_status("lb", "default", svc)
    assert written.status.load_balancer.ingress[0].ip == "10.0.10.1"
    assert written.status.load_balancer.ingress[0].ip_mode == "VIP"
    assert written.spec.external_ips is None  # spec kept from storage
    assert written.metadata.labels["extra"] == "yes"  # metadata accepted through /status

    # main-resource writes keep the stored status
    written.status = client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus())
    written.spec.external_ips = ["192.0.2.1"]
    replaced = core.replace_namespaced_service("lb", "default", written)
    assert replaced.status.load_balancer.ingress[0].ip == "10.0.10.1"
    assert replaced.spec.external_ips == ["192.0.2.1"]


def test_service_validation(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service("default", {"metadata": {"name": "noports"}, "spec": {}})
    assert caught.value.status == 422
    assert json.loads(caught.value.body)["details"]["causes"][0]["field"] == "spec.ports"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service("default", _service("Bad_Name"))
    assert caught.value.status == 422


def test_type_errors_in_built_in_bodies_are_400(custom: client.CustomObjectsApi) -> None:
    # the typed API refuses such bodies client-side; custom-objects calls send them verbatim
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "x", "labels": {"a": 1}},
        "spec": {"leaseDurationSeconds": "fifteen"},
    }
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            "coordination.k8s.io", "v1", "default", "leases", body
        )
    assert caught.value.status == 400
    assert "cannot be handled as a Lease" in json.loads(caught.value.body)["message"]


def test_wrong_namespace_in_body_is_400(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "x", "namespace": "kube-system"},
                "spec": {"ports": [{"port": 1}]},
            },
        )
    assert caught.value.status == 400


def test_strategic_merge_patch_merges_ports_by_port(core: client.CoreV1Api) -> None:
    core.create_namespaced_service(
        "default",
        {"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}},
    )
    patched = core.patch_namespaced_service(
        "web", "default", {"spec": {"ports": [{"name": "https", "port": 443}]}}
    )
    assert sorted(p.port for p in patched.spec.ports) == [80, 443]
    merged = core.patch_namespaced_service(
        "web",
        "default",
        {"spec": {"ports": [{"name": "http", "port": 80, "$patch": "delete"}]}},
    )
    assert [p.port for p in merged.spec.ports] == [443]
    replaced = core.patch_namespaced_service(
        "web",
        "default",
        {"spec": {"ports": [{"name": "x", "port": 8080}]}},
        _content_type="application/merge-patch+json",
    )
    assert [p.port for p in replaced.spec.ports] == [8080]


def test_patch_with_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    node = core.create_node({"metadata": {"name": "n1"}})
    core.patch_node("n1", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ApiException) as caught:
        core.patch_node(
            "n1",
            {"metadata": {"labels": {"a": "c"}, "resourceVersion": node.metadata.resource_version}},
        )
    assert caught.value.status == 409
    with pytest.raises(ApiException) as caught:
        core.patch_node("ghost", {"metadata": {"labels": {"a": "c"}}})
    assert caught.value.status == 404


def test_node_keeps_status_on_create_and_uid_precondition(core: client.CoreV1Api) -> None:
    node = core.create_node(
        {
            "metadata": {"name": "n1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    assert node.status.conditions[0].type == "Ready"
    assert node.metadata.generation is None
    node.metadata.uid = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ApiException) as caught:
        core.replace_node("n1", node)
    assert caught.value.status == 409
    assert "Precondition failed: UID in precondition" in json.loads(caught.value.body)["message"]
    delete = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))
    with pytest.raises(ApiException) as caught:
        core.delete_node("n1", body=delete)
    assert caught.value.status == 409
    uid = core.read_node("n1").metadata.uid
    assert core.delete_node("n1") == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "n1", "kind": "nodes", "uid": uid},
    }


def test_finalizers_delay_deletion(core: client.CoreV1Api) -> None:
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "fin", "finalizers": ["example.com/hold"]},
            "spec": {"ports": [{"port": 1}]},
        },
    )
    marked = core.delete_namespaced_service("fin", "default")
    assert marked.metadata.deletion_timestamp is not None
    still = core.read_namespaced_service("fin", "default")
    assert still.metadata.finalizers == ["example.com/hold"]
    core.patch_namespaced_service("fin", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_service("fin", "default")
    assert caught.value.status == 404


def test_pod_status_reset_and_generate_name(core: client.CoreV1Api) -> None:
    pod = core.create_namespaced_pod(
        "default",
        {
            "metadata": {"generateName": "agent-"},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"},
            "status": {"phase": "Running"},
        },
    )
    assert pod.metadata.name.startswith("agent-") and len(pod.metadata.name) == len("agent-") + 5
    assert pod.status.phase == "Pending"
    deleted = core.delete_namespaced_pod(pod.metadata.name, "default")
    assert isinstance(deleted, client.V1Pod)


def test_unknown_fields_of_built_in_kinds_are_dropped_with_a_warning(
    custom: client.CustomObjectsApi,
) -> None:
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "typo"},
        "spec": {"holderIdentity": "a", "holderIdentiy": "b"},
    }
    response = custom.create_namespaced_custom_object(
        "coordination.k8s.io", "v1", "default", "leases", body, _preload_content=False
    )
    assert json.loads(response.data)["spec"] == {"holderIdentity": "a"}
    assert response.headers["Warning"] == '299 - "unknown field \\"spec.holderIdentiy\\""'
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            "coordination.k8s.io",
            "v1",
            "default",
            "leases",
            {**body, "metadata": {"name": "strict"}},
            field_validation="Strict",
        )
    assert caught.value.status == 400
    assert json.loads(caught.value.body)["message"] == (
        'strict decoding error: unknown field "spec.holderIdentiy"'
    )


def test_strategic_merge_directives(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "n1", "finalizers": ["a/x", "b/y"]}})
    patched = core.patch_node(
        "n1",
        {
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"], "finalizers": ["c/z"]},
            "status": {"$setElementOrder/conditions": [{"type": "Ready"}]},
        },
    )
    assert patched.metadata.finalizers == ["b/y", "c/z"]


def test_graceful_pod_deletion_completes_after_the_kubelet_delay() -> None:
    options = ServerOptions(api=ApiConfig(pod_termination_seconds=0.2))
    with KubeApiServer(options=options) as server:
        api = make_client(server.url)
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "p"},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            },
        )
        marked = core.delete_namespaced_pod("p", "default")
        assert marked.metadata.deletion_timestamp is not None
        assert marked.metadata.deletion_grace_period_seconds == 30
        seen = []
        for event in watch.Watch().stream(
            core.list_namespaced_pod,
            "default",
            resource_version=marked.metadata.resource_version,
            timeout_seconds=10,
        ):
            seen.append(event["type"])
            if event["type"] == "DELETED":
                break
        assert seen == ["DELETED"]
        api.close()
