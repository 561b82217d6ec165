"""The real kubectl against the server: the seed's runbook commands and everyday editing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from kubernetes import client

from lab.kubeapi.server import KubeApiServer
from tests.integration.kubeapi.conftest import CRD_DIR, Kubectl

POLICY1 = """\
apiVersion: "cilium.io/v2alpha1"
kind: CiliumL2AnnouncementPolicy
metadata:
  name: policy1
spec:
  serviceSelector:
    matchLabels:
      color: blue
  nodeSelector:
    matchExpressions:
      - key: node-role.kubernetes.io/control-plane
        operator: DoesNotExist
  interfaces:
  - ^eth[0-9]+
  externalIPs: true
  loadBalancerIPs: true
"""

LEASE = "cilium-l2announce-default-deathstar"


def _rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines()]


def _apply_policy(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl("apply", "-f", str(CRD_DIR))
    policy = tmp_path / "policy1.yaml"
    policy.write_text(POLICY1)
    assert "created" in kubectl("apply", "-f", str(policy)).stdout


def _create_lease(core_api: client.ApiClient) -> client.V1Lease:
    return client.CoordinationV1Api(core_api).create_namespaced_lease(
        "kube-system",
        {
            "metadata": {"name": LEASE},
            "spec": {
                "acquireTime": "2023-05-09T15:14:20.108431Z",
                "holderIdentity": "worker-node",
                "leaseDurationSeconds": 3,
                "leaseTransitions": 1,
                "renewTime": "2023-05-12T12:15:26.773020Z",
            },
        },
    )


def test_apply_crd_and_policy_then_get_by_kind_and_short_name(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    _apply_policy(kubectl, tmp_path)
    for name in (
        "CiliumL2AnnouncementPolicy",
        "l2announcement",
        "ciliuml2announcementpolicies.cilium.io",
    ):
        rows = _rows(kubectl("get", name).stdout)
        assert rows[0] == ["NAME", "AGE"]
        assert rows[1][0] == "policy1"
        assert re.fullmatch(r"\d+s", rows[1][1])
    # a second apply is a no-op patch
    assert "unchanged" in kubectl("apply", "-f", str(tmp_path / "policy1.yaml")).stdout
    crds = _rows(kubectl("get", "crd").stdout)
    assert crds[0] == ["NAME", "CREATED", "AT"]
    assert crds[1][0] == "ciliuml2announcementpolicies.cilium.io"


def test_apply_rejects_unknown_fields_like_the_real_server(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    kubectl("apply", "-f", str(CRD_DIR))
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY1.replace("  externalIPs: true", "  externalIPz: true"))
    result = kubectl("apply", "-f", str(bad), check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.externalIPz"' in result.stderr


def test_describe_policy_shows_spec_and_status(
    kubectl: Kubectl, tmp_path: Path, api: client.ApiClient
) -> None:
    _apply_policy(kubectl, tmp_path)
    objects = client.CustomObjectsApi(api)
    current = objects.get_cluster_custom_object(
        "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", "policy1"
    )
    current["status"] = {
        "conditions": [
            {
                "type": "io.cilium/bad-service-selector",
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": "2023-05-12T15:39:01Z",
                "reason": "error",
                "message": "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
            }
        ]
    }
    objects.replace_cluster_custom_object_status(
        "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", "policy1", current
    )
    text = kubectl("describe", "l2announcement", "policy1").stdout
    lines = [" ".join(line.split()) for line in text.splitlines()]
    for expected in (
        "Name: policy1",
        "API Version: cilium.io/v2alpha1",
        "Kind: CiliumL2AnnouncementPolicy",
        "Service Selector:",
        "Color: blue",
        "Operator: DoesNotExist",
        "Last Transition Time: 2023-05-12T15:39:01Z",
        "Observed Generation: 1",
        "Reason: error",
        "Status: True",
        "Type: io.cilium/bad-service-selector",
    ):
        assert expected in lines, f"{expected!r} missing from:\n{text}"


def test_get_lease_prints_name_holder_age(kubectl: Kubectl, api: client.ApiClient) -> None:
    _create_lease(api)
    rows = _rows(kubectl("-n", "kube-system", "get", "lease").stdout)
    assert rows[0] == ["NAME", "HOLDER", "AGE"]
    assert rows[1][:2] == [LEASE, "worker-node"]
    assert re.fullmatch(r"\d+s", rows[1][2])
    single = _rows(kubectl("-n", "kube-system", "get", "lease", LEASE).stdout)
    assert single[1][:2] == [LEASE, "worker-node"]


def test_get_lease_yaml_shows_the_seed_fields(kubectl: Kubectl, api: client.ApiClient) -> None:
    lease = _create_lease(api)
    shown = yaml.safe_load(
        kubectl("-n", "kube-system", "get", f"lease/{LEASE}", "-o", "yaml").stdout
    )
    assert shown == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "creationTimestamp": shown["metadata"]["creationTimestamp"],
            "name": LEASE,
            "namespace": "kube-system",
            "resourceVersion": lease.metadata.resource_version,
            "uid": lease.metadata.uid,
        },
        "spec": {
            "acquireTime": "2023-05-09T15:14:20.108431Z",
            "holderIdentity": "worker-node",
            "leaseDurationSeconds": 3,
            "leaseTransitions": 1,
            "renewTime": "2023-05-12T12:15:26.773020Z",
        },
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", shown["metadata"]["creationTimestamp"])


def test_edit_patch_delete(kubectl: Kubectl, tmp_path: Path, api: client.ApiClient) -> None:
    _create_lease(api)
    _apply_policy(kubectl, tmp_path)
    leases = client.CoordinationV1Api(api)
    objects = client.CustomObjectsApi(api)

    editor = {"KUBE_EDITOR": "sed -i s/worker-node/edited-node/"}
    kubectl("-n", "kube-system", "edit", "lease", LEASE, extra_env=editor)
    assert leases.read_namespaced_lease(LEASE, "kube-system").spec.holder_identity == "edited-node"

    editor = {"KUBE_EDITOR": "sed -i s/DoesNotExist/Exists/"}
    kubectl("edit", "l2announcement", "policy1", extra_env=editor)
    policy = objects.get_cluster_custom_object(
        "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", "policy1"
    )
    assert policy["spec"]["nodeSelector"]["matchExpressions"][0]["operator"] == "Exists"
    assert policy["metadata"]["generation"] == 2

    kubectl(
        "-n", "kube-system", "patch", "lease", LEASE, "-p", '{"spec":{"holderIdentity":"node2"}}'
    )
    assert leases.read_namespaced_lease(LEASE, "kube-system").spec.holder_identity == "node2"

    refused = kubectl(
        "patch", "l2announcement", "policy1", "-p", '{"spec":{"externalIPs":false}}', check=False
    )
    assert refused.returncode != 0
    assert "the body of the request was in an unknown format" in refused.stderr
    kubectl(
        "patch",
        "l2announcement",
        "policy1",
        "--type",
        "merge",
        "-p",
        '{"spec":{"externalIPs":false}}',
    )
    kubectl(
        "patch",
        "l2announcement",
        "policy1",
        "--type",
        "json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/loadBalancerIPs", "value": False}]),
    )
    policy = objects.get_cluster_custom_object(
        "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", "policy1"
    )
    assert policy["spec"]["externalIPs"] is False and policy["spec"]["loadBalancerIPs"] is False

    kubectl("delete", "l2announcement", "policy1")
    kubectl("-n", "kube-system", "delete", "lease", LEASE)
    assert "No resources found" in kubectl("get", "l2announcement").stderr
    assert "No resources found" in kubectl("-n", "kube-system", "get", "lease").stderr


def test_delete_crd_removes_the_resource(
    kubectl: Kubectl, tmp_path: Path, server: KubeApiServer
) -> None:
    _apply_policy(kubectl, tmp_path)
    kubectl("delete", "-f", str(CRD_DIR))
    result = kubectl("get", "l2announcement", check=False)
    assert result.returncode != 0
    assert server.registry.lookup("cilium.io", "v2alpha1", "ciliuml2announcementpolicies") is None


def test_get_services_and_nodes_tables(kubectl: Kubectl, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_node(
        {
            "metadata": {"name": "kind-worker", "labels": {"node-role.kubernetes.io/worker": ""}},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "nodeInfo": _node_info(),
            },
        }
    )
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "service-red"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        },
    )
    nodes = _rows(kubectl("get", "nodes").stdout)
    assert nodes[0] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[1][:3] == ["kind-worker", "Ready", "worker"]
    services = _rows(kubectl("get", "svc").stdout)
    assert services[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert services[1][:2] == ["service-red", "LoadBalancer"]
    assert services[1][3] == "<pending>"


def _node_info() -> dict[str, str]:
    fields = [
        "architecture",
        "bootID",
        "containerRuntimeVersion",
        "kernelVersion",
        "kubeProxyVersion",
        "machineID",
        "operatingSystem",
        "osImage",
        "systemUUID",
    ]
    return {**{f: "x" for f in fields}, "kubeletVersion": "v1.32.0"}


SEED_LEASE_RULE = """\
rules:
- apiGroups:
  - coordination.k8s.io
  resources:
  - leases
  verbs:
  - create
  - get
  - update
  - list
  - delete
"""


def test_seed_runbook_edit_clusterrole_adds_the_lease_rule(
    kubectl: Kubectl, tmp_path: Path, api: client.ApiClient
) -> None:
    client.RbacAuthorizationV1Api(api).create_cluster_role(
        {"metadata": {"name": "cilium"}, "rules": []}  # type: ignore[arg-type]
    )
    block = tmp_path / "rule.yaml"
    block.write_text(SEED_LEASE_RULE)
    editor = tmp_path / "editor.sh"
    editor.write_text(f'#!/bin/sh\nsed -i \'/^rules: \\[\\]$/d\' "$1"\ncat {block} >> "$1"\n')
    editor.chmod(0o755)
    kubectl("edit", "clusterrole", "cilium", extra_env={"KUBE_EDITOR": str(editor)})
    role = client.RbacAuthorizationV1Api(api).read_cluster_role("cilium")
    assert [(r.api_groups, r.resources, r.verbs) for r in role.rules] == [
        (["coordination.k8s.io"], ["leases"], ["create", "get", "update", "list", "delete"])
    ]


def test_seed_runbook_agent_pod_wide_and_category(
    kubectl: Kubectl, tmp_path: Path, api: client.ApiClient
) -> None:
    _apply_policy(kubectl, tmp_path)
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        "kube-system",
        {
            "metadata": {
                "name": "cilium-z4ef7",
                "labels": {"app.kubernetes.io/name": "cilium-agent"},
            },
            "spec": {
                "nodeName": "kind-worker",
                "containers": [{"name": "agent", "image": "l2agent"}],
            },
        },
    )
    pod = core.read_namespaced_pod("cilium-z4ef7", "kube-system")
    pod.status = client.V1PodStatus(phase="Running", pod_ip="172.19.0.3")
    core.replace_namespaced_pod_status("cilium-z4ef7", "kube-system", pod)
    rows = _rows(
        kubectl(
            "-n",
            "kube-system",
            "get",
            "pod",
            "-l",
            "app.kubernetes.io/name=cilium-agent",
            "-o",
            "wide",
        ).stdout
    )
    assert rows[0] == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ]
    assert rows[1][:3] + rows[1][5:] == [
        "cilium-z4ef7",
        "0/1",
        "Running",
        "172.19.0.3",
        "kind-worker",
        "<none>",
        "<none>",
    ]
    # the CRD's category reaches the policy
    assert _rows(kubectl("get", "cilium").stdout)[1][0] == "policy1"
