"""The seed's troubleshooting case on the real apiserver: an agent deployed without its lease
RBAC logs the seed's 403 line, and granting the shipped Role heals it without a restart; kubectl,
as the agent's ServiceAccount, sees the same 403 the seed shows."""

from __future__ import annotations

import time

from tests.integration.agent.cluster import AGENT_ROLE, Cluster, agent_roles, until
from tests.kube import Kube


def forbidden(ns: str, user_sa: str, lease: str, verb: str = "get") -> str:
    """The apiserver's 403 message, which the seed quotes (with kube-system and cilium)."""
    return (
        f'leases.coordination.k8s.io "{lease}" is forbidden: User '
        f'"system:serviceaccount:{ns}:{user_sa}" cannot {verb} resource "leases" in API group '
        f'"coordination.k8s.io" in the namespace "{ns}"'
    )


def logfmt(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def bind_role(kube: Kube, service_account: str) -> None:
    """What an operator does after reading the runbook: grant the shipped lease Role."""
    kube.cp.apply({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": f"{AGENT_ROLE}-{service_account}", "namespace": kube.namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": AGENT_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": service_account,
                      "namespace": kube.namespace}],
    })  # fmt: skip


def test_an_agent_without_lease_rbac_logs_the_seeds_403_and_heals_when_granted(
    cluster: Cluster, kube: Kube
) -> None:
    (_, cluster_role), _ = agent_roles(kube)
    # Deployed with the ClusterRole only: everything but the leases.
    cluster.kubeconfigs["node1"] = kube.service_account("node1", [("ClusterRole", cluster_role)])
    ip_of = cluster.services(1, app="demo")
    (lease,) = ip_of
    cluster.start_agent("node1")
    line = (
        f'level=error msg="error retrieving resource lock {kube.namespace}/{lease}: '
        f'{logfmt(forbidden(kube.namespace, "node1", lease))}" subsys=klog'
    )
    until(lambda: line in cluster.log_text("node1"), 30, "the seed's 403 line logged")
    assert not cluster.announced("node1")
    denied = [e for e in cluster.agent_requests(resource="leases") if e.code == 403]
    assert denied and {e.user for e in denied} == {cluster.user("node1")}

    granted = time.time()
    bind_role(kube, "node1")
    until(lambda: cluster.announced("node1") == set(ip_of.values()), 30, "announced once granted")
    assert cluster.holder(lease) == "node1"
    assert cluster.agents["node1"].poll() is None  # the same process: no restart needed
    assert [e for e in cluster.agent_requests(granted, "leases") if e.code == 403] == []


def test_kubectl_as_the_agent_sees_the_seeds_403_until_the_shipped_role_is_bound(
    kube: Kube,
) -> None:
    ns = kube.namespace
    (_, cluster_role), _ = agent_roles(kube)
    agent = kube.service_account("cilium", [("ClusterRole", cluster_role)])
    lease = f"cilium-l2announce-{ns}-service-red"

    denied = kube.kubectl("-n", ns, "get", "lease", lease, kubeconfig=agent)
    assert denied.returncode != 0
    assert denied.stderr.strip() == (
        f"Error from server (Forbidden): {forbidden(ns, 'cilium', lease)}"
    )
    for verb in ("update", "watch"):
        can = kube.kubectl("auth", "can-i", verb, "leases", "-n", ns, kubeconfig=agent)
        assert can.stdout.strip() == "no"

    bind_role(kube, "cilium")
    missing = kube.kubectl("-n", ns, "get", "lease", lease, kubeconfig=agent)
    assert missing.returncode != 0
    assert missing.stderr.strip() == (
        f'Error from server (NotFound): leases.coordination.k8s.io "{lease}" not found'
    )
    for verb in ("create", "get", "update", "list", "delete", "watch"):
        can = kube.kubectl("auth", "can-i", verb, "leases", "-n", ns, kubeconfig=agent)
        assert can.stdout.strip() == "yes", verb
    # What the shipped rules leave out stays out (tests/integration/deploy/test_permissions.py
    # asks the whole list): the agent writes no Service, anywhere.
    for args in (("patch", "leases", "-n", ns), ("update", "leases", "-n", "default"),
                 ("delete", "nodes"), ("update", "services"),
                 ("patch", "services", "-A")):  # fmt: skip
        can = kube.kubectl("auth", "can-i", *args, kubeconfig=agent)
        assert can.stdout.strip() == "no", args
