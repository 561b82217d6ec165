"""RBAC over the wire with the real client: the seed's 403, fixed by the seed's rule, live."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.kubeapi_auth.conftest import LEASE_RULE, NAMESPACE, SecureCluster

LEASE = "cilium-l2announce-default-service-red"
SEED_403 = (
    'leases.coordination.k8s.io "cilium-l2announce-default-service-red" is forbidden: '
    'User "system:serviceaccount:kube-system:cilium" cannot get resource "leases" '
    'in API group "coordination.k8s.io" in the namespace "kube-system"'
)
CILIUM_RULES_WITHOUT_LEASES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["services", "nodes", "pods"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["services/status"], "verbs": ["patch", "update"]},
]


def install_cilium_role(cluster: SecureCluster) -> None:
    cluster.grant("cilium", CILIUM_RULES_WITHOUT_LEASES, "cilium")


def status_of(err: ApiException) -> dict[str, Any]:
    body = json.loads(err.body)
    assert isinstance(body, dict)
    return body


def test_missing_lease_verbs_give_the_seed_403_and_the_seed_rule_fixes_it_live(
    cluster: SecureCluster,
) -> None:
    install_cilium_role(cluster)
    cilium = cluster.node("cilium")

    with pytest.raises(ApiException) as denied:
        cilium.leases.read_namespaced_lease(LEASE, NAMESPACE)
    assert denied.value.status == 403
    status = status_of(denied.value)
    assert status["message"] == SEED_403
    assert status["reason"] == "Forbidden" and status["code"] == 403
    assert status["details"] == {"name": LEASE, "group": "coordination.k8s.io", "kind": "leases"}
    # What the agent logs, as in the seed's troubleshooting section.
    line = f"error retrieving resource lock kube-system/{LEASE}: {status['message']}"
    assert line.endswith('in the namespace "kube-system"')

    # `kubectl edit clusterrole cilium`: add the seed's block, no restart of anything.
    rbac = client.RbacAuthorizationV1Api(cluster.admin)
    role = rbac.read_cluster_role("cilium")
    role.rules.append(
        client.V1PolicyRule(
            api_groups=LEASE_RULE["apiGroups"],
            resources=LEASE_RULE["resources"],
            verbs=LEASE_RULE["verbs"],
        )
    )
    rbac.replace_cluster_role("cilium", role)

    with pytest.raises(ApiException) as missing:
        cilium.leases.read_namespaced_lease(LEASE, NAMESPACE)
    assert missing.value.status == 404  # authorized now; the lease just does not exist yet
    assert status_of(missing.value)["code"] == 404

    created = cilium.leases.create_namespaced_lease(
        NAMESPACE,
        {"metadata": {"name": LEASE}, "spec": {"holderIdentity": "node1"}},  # type: ignore[arg-type]
    )
    assert created.spec.holder_identity == "node1"
    # The rule grants no watch and no patch.
    with pytest.raises(ApiException) as no_patch:
        cilium.leases.patch_namespaced_lease(LEASE, NAMESPACE, {"spec": {"holderIdentity": "x"}})
    assert no_patch.value.status == 403
    assert "cannot patch resource" in status_of(no_patch.value)["message"]

    # Taking the binding away takes effect on the next request too.
    rbac.delete_cluster_role_binding("cilium")
    with pytest.raises(ApiException) as again:
        cilium.leases.read_namespaced_lease(LEASE, NAMESPACE)
    assert status_of(again.value)["message"] == SEED_403

    records = cluster.security.request_log.query(
        user="system:serviceaccount:kube-system:cilium", resource="leases", verb="get"
    )
    assert [r.status for r in records] == [403, 404, 403]


def test_message_variants_over_the_wire(cluster: SecureCluster) -> None:
    install_cilium_role(cluster)
    cilium = cluster.node("cilium")
    user = "system:serviceaccount:kube-system:cilium"
    core = client.CoreV1Api(cluster.admin)
    core.create_namespaced_service(
        "default",
        {"metadata": {"name": "red"}, "spec": {"ports": [{"port": 80}], "type": "LoadBalancer"}},  # type: ignore[arg-type]
    )

    cases: list[tuple[Any, str]] = [
        (
            lambda: cilium.leases.list_namespaced_lease(NAMESPACE),
            f'leases.coordination.k8s.io is forbidden: User "{user}" cannot list resource "leases" '
            'in API group "coordination.k8s.io" in the namespace "kube-system"',
        ),
        (
            lambda: cilium.leases.list_lease_for_all_namespaces(),
            f'leases.coordination.k8s.io is forbidden: User "{user}" cannot list resource "leases" '
            'in API group "coordination.k8s.io" at the cluster scope',
        ),
        (
            lambda: client.CoreV1Api(cilium.api).delete_node("node1"),
            f'nodes "node1" is forbidden: User "{user}" cannot delete resource "nodes" '
            'in API group "" at the cluster scope',
        ),
        (
            lambda: client.CoreV1Api(cilium.api).read_namespaced_config_map("c", "default"),
            f'configmaps "c" is forbidden: User "{user}" cannot get resource "configmaps" '
            'in API group "" in the namespace "default"',
        ),
        (
            lambda: client.CoreV1Api(cilium.api).patch_namespaced_pod_status(
                "p", "default", {"status": {}}
            ),
            f'pods "p" is forbidden: User "{user}" cannot patch resource "pods/status" '
            'in API group "" in the namespace "default"',
        ),
    ]
    for call, expected in cases:
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403
        assert status_of(err.value)["message"] == expected

    # services/status is granted by the role: the status write goes through.
    svc = client.CoreV1Api(cilium.api).read_namespaced_service("red", "default")
    svc.status = client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus(ingress=[]))
    client.CoreV1Api(cilium.api).replace_namespaced_service_status("red", "default", svc)


def test_resource_names_allow_a_list_or_watch_of_that_name_by_field_selector(
    cluster: SecureCluster,
) -> None:
    # As kube-apiserver's RequestInfoFactory: a list or watch with fieldSelector
    # metadata.name=<n> is authorized as a request for <n> (`kubectl get lease <n> -w`).
    one_lease = {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "list", "watch"],
        "resourceNames": [LEASE],
    }
    cluster.grant("one-lease", [one_lease], "watcher", namespace=NAMESPACE)
    leases = cluster.node("watcher").leases
    user = "system:serviceaccount:kube-system:watcher"

    assert (
        leases.list_namespaced_lease(NAMESPACE, field_selector=f"metadata.name={LEASE}").items == []
    )
    listed = leases.list_namespaced_lease(
        NAMESPACE, field_selector=f"metadata.name=={LEASE},metadata.namespace={NAMESPACE}"
    )
    assert listed.items == []
    watched = leases.list_namespaced_lease(
        NAMESPACE,
        field_selector=f"metadata.name={LEASE}",
        watch=True,
        timeout_seconds=1,
        _preload_content=False,
    )
    assert watched.status == 200
    watched.release_conn()

    cases = [
        ("", "list", "leases.coordination.k8s.io is forbidden"),
        ("metadata.name=other", "list", 'leases.coordination.k8s.io "other" is forbidden'),
        (f"metadata.name!={LEASE}", "list", "leases.coordination.k8s.io is forbidden"),
    ]
    for selector, verb, start in cases:
        with pytest.raises(ApiException) as err:
            leases.list_namespaced_lease(NAMESPACE, field_selector=selector)
        assert status_of(err.value)["message"] == (
            f'{start}: User "{user}" cannot {verb} resource "leases" in API group '
            '"coordination.k8s.io" in the namespace "kube-system"'
        )


def test_binding_to_a_missing_cluster_role_says_so(cluster: SecureCluster) -> None:
    rbac = client.RbacAuthorizationV1Api(cluster.admin)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "cilium"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cilium",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "cilium", "namespace": NAMESPACE}],
        }  # type: ignore[arg-type]
    )
    cilium = cluster.node("cilium")
    with pytest.raises(ApiException) as err:
        cilium.leases.read_namespaced_lease(LEASE, NAMESPACE)
    assert status_of(err.value)["message"] == (
        SEED_403 + ': RBAC: clusterrole.rbac.authorization.k8s.io "cilium" not found'
    )


def test_unknown_or_missing_token_is_401(cluster: SecureCluster) -> None:
    stranger = cluster.client_for("not-a-token", "stranger")
    with pytest.raises(ApiException) as err:
        client.CoordinationV1Api(stranger).read_namespaced_lease(LEASE, NAMESPACE)
    assert err.value.status == 401
    assert status_of(err.value)["message"] == "Unauthorized"

    no_token = client.Configuration()
    no_token.host = cluster.server.url
    no_token.ssl_ca_cert = str(cluster.security.tls.ca)
    with client.ApiClient(no_token) as anonymous, pytest.raises(ApiException) as err:
        client.CoordinationV1Api(anonymous).read_namespaced_lease(LEASE, NAMESPACE)
    assert err.value.status == 401

    # Authenticated but not authorized: 403; the same token revoked: 401 on the next request.
    rotated = cluster.node("node9")
    with pytest.raises(ApiException) as err:
        rotated.leases.read_namespaced_lease(LEASE, NAMESPACE)
    assert err.value.status == 403
    cluster.security.authenticator.revoke(rotated.token)
    with pytest.raises(ApiException) as err:
        rotated.leases.read_namespaced_lease(LEASE, NAMESPACE)
    assert err.value.status == 401


def test_incluster_directory_reaches_the_server(cluster: SecureCluster) -> None:
    from lab.kubeapi.kubeconfig import load_incluster_config

    cluster.grant_leases("agent")
    incluster = cluster.security.write_service_account(
        cluster.workdir / "sa", cluster.server.url, NAMESPACE, "agent"
    )
    configuration = load_incluster_config(incluster.directory, incluster.environ())
    with client.ApiClient(configuration) as api:
        leases = client.CoordinationV1Api(api).list_namespaced_lease(incluster.namespace())
    assert leases.items == []
    assert cluster.security.request_log.users(verb="list") == [
        "system:serviceaccount:kube-system:agent"
    ]
