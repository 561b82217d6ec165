"""`kubectl apply` of deploy/ against the lab's API server (TLS, tokens, RBAC enforced), then the
agent's ServiceAccount doing exactly what the agent does, and nothing more.

The whole directory (`kubectl apply -f deploy/crds/ -f deploy/`) needs a server that serves
ConfigMaps and DaemonSets; until the lab's does, that one test is skipped with the reason and the
others apply the files of the kinds it serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from lab.kubeapi.security import Security
from lab.kubeapi.server import KubeApiServer

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
CRDS = DEPLOY / "crds"
NAMESPACE = "kube-system"
SA = "l2announcer"
LEASE = "cilium-l2announce-default-service-red"


@dataclass
class Lab:
    server: KubeApiServer
    security: Security
    work: Path
    admin_kubeconfig: Path

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.skip("kubectl is not installed")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work),
            "KUBECONFIG": str(kubeconfig or self.admin_kubeconfig),
        }
        return subprocess.run(
            [binary, *args], env=env, capture_output=True, text=True, timeout=60, cwd=REPO
        )

    def agent_client(self) -> client.ApiClient:
        """A client with the l2announcer ServiceAccount's token, as the agent's pods get."""
        token = self.security.authenticator.add_service_account(NAMESPACE, SA)
        path = self.security.write_kubeconfig(
            self.work / "agent.kubeconfig", self.server.url, token, SA
        )
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), client_configuration=configuration
        )
        return client.ApiClient(configuration)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    security = Security.create(tmp_path / "pki")
    server = security.server()
    server.start()
    try:
        admin = security.write_admin_kubeconfig(tmp_path / "admin.kubeconfig", server.url)
        yield Lab(server, security, tmp_path, admin)
    finally:
        server.stop()


def _kinds_served(lab: Lab) -> set[str]:
    listed = lab.kubectl("api-resources", "--no-headers")
    assert listed.returncode == 0, listed.stderr
    # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND: the kind is the last column.
    return {line.split()[-1] for line in listed.stdout.splitlines() if line.strip()}


def _objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _plain_files() -> list[Path]:
    return sorted(DEPLOY.glob("*.yaml"))


def _assert_created(lab: Lab, files: list[Path]) -> None:
    for path in files:
        got = lab.kubectl("get", "-f", str(path), "-o", "json")
        assert got.returncode == 0, f"{path.name}: {got.stderr}"
        items = json.loads(got.stdout)
        items = items.get("items", [items])
        want = {(o["kind"], o["metadata"]["name"]) for o in _objects(path)}
        assert {(o["kind"], o["metadata"]["name"]) for o in items} == want


def _apply_served(lab: Lab) -> list[Path]:
    served = _kinds_served(lab)
    files = [
        p
        for p in [*sorted(CRDS.glob("*.yaml")), *_plain_files()]
        if all(o["kind"] in served for o in _objects(p))
    ]
    args = [a for p in files for a in ("-f", str(p))]
    applied = lab.kubectl("apply", *args)
    assert applied.returncode == 0, applied.stderr
    return files


def test_apply_of_the_whole_deploy_directory_creates_every_object(lab: Lab) -> None:
    served = _kinds_served(lab)
    missing = sorted({o["kind"] for p in _plain_files() for o in _objects(p)} - served)
    if missing:
        pytest.skip(
            f"the lab API server does not serve {', '.join(missing)} yet "
            "(lab/kubeapi/resources.py); the other kinds are applied by the tests below"
        )
    applied = lab.kubectl("apply", "-f", "deploy/crds/", "-f", "deploy/")
    assert applied.returncode == 0, applied.stderr
    _assert_created(lab, [*sorted(CRDS.glob("*.yaml")), *_plain_files()])


def test_apply_creates_the_crd_and_rbac(lab: Lab) -> None:
    files = _apply_served(lab)
    names = {p.name for p in files}
    assert {
        "ciliuml2announcementpolicies.yaml",
        "serviceaccount.yaml",
        "clusterrole.yaml",
        "clusterrolebinding.yaml",
        "role.yaml",
        "rolebinding.yaml",
    } <= names
    _assert_created(lab, files)
    # Applying again changes nothing (what `kubectl apply` in an upgrade does).
    again = lab.kubectl("apply", *[a for p in files for a in ("-f", str(p))])
    assert again.returncode == 0, again.stderr
    assert "configured" not in again.stdout, again.stdout


def _status(call: Any, *args: Any, **kwargs: Any) -> int:
    try:
        call(*args, **kwargs)
    except ApiException as e:
        return int(e.status)
    return 200


def test_the_service_account_can_do_what_the_agent_does(lab: Lab) -> None:
    _apply_served(lab)
    policy = {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": "policy1"},
        "spec": {"loadBalancerIPs": True},
    }
    manifest = lab.work / "policy.yaml"
    manifest.write_text(yaml.safe_dump(policy))
    created = lab.kubectl("apply", "-f", str(manifest))
    assert created.returncode == 0, created.stderr

    api = lab.agent_client()
    try:
        core = client.CoreV1Api(api)
        leases = client.CoordinationV1Api(api)
        custom = client.CustomObjectsApi(api)
        discovery = client.DiscoveryV1Api(api)

        # Reads, cluster-wide (services, this node, its pods, endpointslices, policies).
        assert _status(core.list_service_for_all_namespaces) == 200
        assert _status(core.list_node, field_selector="metadata.name=node1") == 200
        assert (
            _status(core.list_pod_for_all_namespaces, field_selector="spec.nodeName=node1") == 200
        )
        assert _status(discovery.list_endpoint_slice_for_all_namespaces) == 200
        assert (
            _status(
                custom.list_cluster_custom_object,
                "cilium.io",
                "v2alpha1",
                "ciliuml2announcementpolicies",
            )
            == 200
        )

        # Leases in the agent's namespace: the elector's whole life cycle.
        body = {
            "metadata": {"name": LEASE},
            "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 15},
        }
        assert _status(leases.create_namespaced_lease, NAMESPACE, body) == 200
        lease = leases.read_namespaced_lease(LEASE, NAMESPACE)
        assert lease.spec is not None
        lease.spec.holder_identity = "node2"
        assert _status(leases.replace_namespaced_lease, LEASE, NAMESPACE, lease) == 200
        assert _status(leases.list_namespaced_lease, NAMESPACE) == 200
        assert (
            _status(
                leases.list_namespaced_lease,
                NAMESPACE,
                watch=True,
                timeout_seconds=1,
                _preload_content=False,
            )
            == 200
        )
        assert _status(leases.delete_namespaced_lease, LEASE, NAMESPACE) == 200

        # Policy conditions, through the status subresource only.
        status: dict[str, Any] = {"status": {"conditions": []}}
        assert (
            _status(
                custom.patch_cluster_custom_object_status,
                "cilium.io",
                "v2alpha1",
                "ciliuml2announcementpolicies",
                "policy1",
                status,
            )
            == 200
        )

        # Nothing more.
        assert _status(leases.create_namespaced_lease, "default", body) == 403
        assert _status(leases.list_lease_for_all_namespaces) == 403
        assert (
            _status(
                custom.patch_cluster_custom_object,
                "cilium.io",
                "v2alpha1",
                "ciliuml2announcementpolicies",
                "policy1",
                {"spec": {}},
            )
            == 403
        )
        assert (
            _status(
                custom.delete_cluster_custom_object,
                "cilium.io",
                "v2alpha1",
                "ciliuml2announcementpolicies",
                "policy1",
            )
            == 403
        )
        assert _status(core.patch_node, "node1", {"metadata": {"labels": {"a": "b"}}}) == 403
        assert _status(core.list_secret_for_all_namespaces) == 403
        assert _status(core.list_config_map_for_all_namespaces) == 403
    finally:
        api.close()  # type: ignore[no-untyped-call]


def test_without_the_lease_role_the_agent_gets_the_seeds_403(lab: Lab) -> None:
    _apply_served(lab)
    api = lab.agent_client()
    try:
        leases = client.CoordinationV1Api(api)
        assert _status(leases.read_namespaced_lease, LEASE, NAMESPACE) == 404

        # The Role without its leases rule (what an incomplete install or a hand edit leaves).
        (role,) = _objects(DEPLOY / "role.yaml")
        role["rules"] = [r for r in role["rules"] if "leases" not in r["resources"]]
        without = lab.work / "role-without-leases.yaml"
        without.write_text(yaml.safe_dump(role))
        removed = lab.kubectl("apply", "-f", str(without))
        assert removed.returncode == 0, removed.stderr
        with pytest.raises(ApiException) as denied:
            leases.read_namespaced_lease(LEASE, NAMESPACE)
        assert denied.value.status == 403
        assert json.loads(str(denied.value.body))["message"] == (
            f'leases.coordination.k8s.io "{LEASE}" is forbidden: '
            'User "system:serviceaccount:kube-system:l2announcer" cannot get resource "leases" '
            'in API group "coordination.k8s.io" in the namespace "kube-system"'
        )

        restored = lab.kubectl("apply", "-f", str(DEPLOY / "role.yaml"))
        assert restored.returncode == 0, restored.stderr
        assert _status(leases.read_namespaced_lease, LEASE, NAMESPACE) == 404
    finally:
        api.close()  # type: ignore[no-untyped-call]
