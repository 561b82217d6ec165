"""kubectl (Go TLS verification, kubeconfig loading) against the TLS server with tokens and RBAC:
the seed's runbook, end to end: the 403 as an operator sees it, the ClusterRole fixed by a patch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.integration.kubeapi_auth.conftest import LEASE_RULE, NAMESPACE, SecureCluster

LEASE = "cilium-l2announce-default-service-red"


def kubectl(kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("kubectl")
    assert binary is not None, "kubectl is not on PATH (make test installs one when missing)"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
    }
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=60)


def test_kubectl_sees_the_seed_403_and_a_patched_cluster_role_fixes_it(
    cluster: SecureCluster,
) -> None:
    security, url, work = cluster.security, cluster.server.url, cluster.workdir
    admin = security.write_admin_kubeconfig(work / "admin.kubeconfig", url)
    token = security.authenticator.add_service_account(NAMESPACE, "cilium")
    agent = security.write_kubeconfig(work / "cilium.kubeconfig", url, token, "cilium")

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "cilium"},
        "rules": [
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "cilium"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cilium",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "cilium", "namespace": NAMESPACE}],
    }
    manifest = work / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all([role, binding]))
    created = kubectl(admin, work, "create", "-f", str(manifest))
    assert created.returncode == 0, created.stderr

    denied = kubectl(agent, work, "-n", NAMESPACE, "get", "lease", LEASE)
    assert denied.returncode != 0
    assert denied.stderr.strip() == (
        f'Error from server (Forbidden): leases.coordination.k8s.io "{LEASE}" is forbidden: '
        'User "system:serviceaccount:kube-system:cilium" cannot get resource "leases" '
        'in API group "coordination.k8s.io" in the namespace "kube-system"'
    )

    patch = json.dumps([{"op": "add", "path": "/rules/-", "value": LEASE_RULE}])
    patched = kubectl(admin, work, "patch", "clusterrole", "cilium", "--type=json", "-p", patch)
    assert patched.returncode == 0, patched.stderr

    missing = kubectl(agent, work, "-n", NAMESPACE, "get", "lease", LEASE)
    assert missing.returncode != 0
    assert missing.stderr.strip() == (
        f'Error from server (NotFound): leases.coordination.k8s.io "{LEASE}" not found'
    )
