"""`kubectl create <kind>` sends protobuf bodies (its typed clients do): the server decodes the
kinds it serves and stores what the real apiserver would, read back with the Python client.
`kind: List` files (what `kubectl get -o yaml` writes) apply, and their items are still
validated."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client

from tests.integration.kubeapi.conftest import Kubectl


def test_create_namespace(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    out = kubectl("create", "namespace", "team-a").stdout
    assert out.strip() == "namespace/team-a created"
    ns = core.read_namespace("team-a")
    assert ns.metadata.uid and ns.metadata.resource_version
    assert ns.status.phase == "Active"


def test_create_configmap_keeps_empty_values(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    kubectl("create", "configmap", "c", "--from-literal=a=b", "--from-literal=empty=")
    cm = core.read_namespaced_config_map("c", "default")
    assert cm.data == {"a": "b", "empty": ""}
    assert cm.binary_data is None and cm.immutable is None


def test_create_serviceaccount(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    kubectl("create", "serviceaccount", "robot", "-n", "kube-system")
    sa = core.read_namespaced_service_account("robot", "kube-system")
    assert sa.metadata.namespace == "kube-system"
    assert sa.automount_service_account_token is None


def test_create_service_loadbalancer(kubectl: Kubectl, core: client.CoreV1Api) -> None:
    # What an operator types to try an announcement.
    kubectl("create", "service", "loadbalancer", "web", "--tcp=80:8080", "--tcp=443")
    svc = core.read_namespaced_service("web", "default")
    assert svc.spec.type == "LoadBalancer"
    assert svc.spec.selector == {"app": "web"}
    assert svc.metadata.labels == {"app": "web"}
    ports = [(p.name, p.protocol, p.port, p.target_port) for p in svc.spec.ports]
    assert ports == [("80-8080", "TCP", 80, 8080), ("443", "TCP", 443, 443)]
    assert svc.spec.cluster_ip, "allocated like any Service"


def test_create_service_with_a_named_target_port_and_external_name(
    kubectl: Kubectl, core: client.CoreV1Api
) -> None:
    kubectl("create", "service", "clusterip", "api", "--tcp=6443:https")
    assert core.read_namespaced_service("api", "default").spec.ports[0].target_port == "https"
    kubectl("create", "service", "externalname", "ext", "--external-name=www.example.com")
    ext = core.read_namespaced_service("ext", "default")
    assert (ext.spec.type, ext.spec.external_name) == ("ExternalName", "www.example.com")


def test_create_rbac_objects(kubectl: Kubectl, api: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    kubectl(
        "create", "clusterrole", "lease-reader", "--verb=get,list,watch",
        "--resource=leases.coordination.k8s.io", "--resource-name=a", "--resource-name=b",
    )  # fmt: skip
    rules = rbac.read_cluster_role("lease-reader").rules
    assert [(r.verbs, r.api_groups, r.resources, r.resource_names) for r in rules] == [
        (["get", "list", "watch"], ["coordination.k8s.io"], ["leases"], ["a", "b"])
    ]
    kubectl("create", "role", "pods", "--verb=get", "--resource=pods", "-n", "kube-system")
    assert rbac.read_namespaced_role("pods", "kube-system").rules[0].resources == ["pods"]
    kubectl(
        "create", "rolebinding", "robot-reads", "--clusterrole=lease-reader",
        "--serviceaccount=kube-system:robot", "--user=alice", "-n", "kube-system",
    )  # fmt: skip
    binding = rbac.read_namespaced_role_binding("robot-reads", "kube-system")
    assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", "lease-reader")
    subjects = [(s.kind, s.name, s.namespace, s.api_group) for s in binding.subjects]
    assert subjects == [
        ("User", "alice", None, "rbac.authorization.k8s.io"),
        ("ServiceAccount", "robot", "kube-system", None),
    ]
    kubectl("create", "clusterrolebinding", "ops", "--clusterrole=lease-reader", "--group=ops")
    assert rbac.read_cluster_role_binding("ops").subjects[0].kind == "Group"


def test_a_list_file_from_get_o_yaml_applies_and_its_items_are_still_validated(
    kubectl: Kubectl, core: client.CoreV1Api, tmp_path: Path
) -> None:
    # `kubectl get -o yaml` of several objects writes a `kind: List`; kubectl validates such a
    # file item by item against OpenAPI v2 before sending it.
    kubectl("create", "configmap", "a", "--from-literal=k=1")
    kubectl("create", "configmap", "b", "--from-literal=k=2")
    saved = tmp_path / "saved.yaml"
    saved.write_text(kubectl("get", "configmap", "a", "b", "-o", "yaml").stdout)
    assert yaml.safe_load(saved.read_text())["kind"] == "List"
    kubectl("delete", "configmap", "a", "b")
    out = kubectl("apply", "-f", str(saved)).stdout
    assert out.splitlines() == ["configmap/a created", "configmap/b created"]
    assert core.read_namespaced_config_map("b", "default").data == {"k": "2"}

    bad = yaml.safe_load(saved.read_text())
    bad["items"][0]["metadata"] = {"name": "c"}
    bad["items"][0]["bogus"] = 1
    saved.write_text(yaml.safe_dump(bad))
    refused = kubectl("apply", "-f", str(saved), check=False)
    assert refused.returncode == 1
    assert 'strict decoding error: unknown field "bogus"' in refused.stderr
