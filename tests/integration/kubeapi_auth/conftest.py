"""Fixtures: a TLS test API server with bearer tokens, RBAC from its own stored objects, fault
injection and a request log, plus real `kubernetes` clients configured through the kubeconfigs
and in-cluster directories the lab writes (so those loaders are exercised too)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from lab.kubeapi.auth import service_account_username
from lab.kubeapi.security import Security
from lab.kubeapi.server import KubeApiServer

NAMESPACE = "kube-system"
LEASE_RULE = {
    "apiGroups": ["coordination.k8s.io"],
    "resources": ["leases"],
    "verbs": ["create", "get", "update", "list", "delete"],
}


@dataclass
class Node:
    """One simulated node: a ServiceAccount token and a client using it."""

    user: str
    token: str
    api: client.ApiClient

    @property
    def leases(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)


@dataclass
class SecureCluster:
    server: KubeApiServer
    security: Security
    workdir: Path
    admin: client.ApiClient
    _clients: list[client.ApiClient] = field(default_factory=list)

    def client_for(self, token: str, user: str) -> client.ApiClient:
        path = self.security.write_kubeconfig(
            self.workdir / f"{user.replace(':', '_')}-{len(self._clients)}.kubeconfig",
            self.server.url,
            token,
            user,
        )
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(path), client_configuration=configuration)
        api = client.ApiClient(configuration)
        self._clients.append(api)
        return api

    def node(self, name: str, namespace: str = NAMESPACE) -> Node:
        token = self.security.authenticator.add_service_account(namespace, name)
        return Node(service_account_username(namespace, name), token, self.client_for(token, name))

    def grant_leases(
        self, *service_accounts: str, role: str = "lease-user", watch: bool = False
    ) -> None:
        """A ClusterRole with the seed's lease rule (plus watch if asked) bound to the given
        ServiceAccounts."""
        rule = dict(LEASE_RULE)
        if watch:
            rule["verbs"] = [*LEASE_RULE["verbs"], "watch"]
        self.grant(role, [rule], *service_accounts)

    def grant(
        self,
        role: str,
        rules: list[dict[str, Any]],
        *service_accounts: str,
        namespace: str | None = None,
    ) -> None:
        """A role named `role` with `rules`, bound (under the same name) to the given
        ServiceAccounts of NAMESPACE: a ClusterRole, or a Role in `namespace` when given."""
        rbac = client.RbacAuthorizationV1Api(self.admin)
        body: Any = {"metadata": {"name": role}, "rules": rules}
        binding: Any = {
            "metadata": {"name": role},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role" if namespace else "ClusterRole",
                "name": role,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
                for sa in service_accounts
            ],
        }
        if namespace:
            rbac.create_namespaced_role(namespace, body)
            rbac.create_namespaced_role_binding(namespace, binding)
        else:
            rbac.create_cluster_role(body)
            rbac.create_cluster_role_binding(binding)

    def close(self) -> None:
        for api in self._clients:
            api.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SecureCluster]:
    security = Security.create(tmp_path / "pki")
    server = security.server()
    server.start()
    admin_config = client.Configuration()
    config.load_kube_config(
        config_file=str(security.write_admin_kubeconfig(tmp_path / "admin.kubeconfig", server.url)),
        client_configuration=admin_config,
    )
    admin = client.ApiClient(admin_config)
    secure = SecureCluster(server, security, tmp_path, admin)
    try:
        yield secure
    finally:
        security.faults.clear()  # release anything still stalled before stopping
        secure.close()
        admin.close()
        server.stop()


def lease_body(name: str, holder: str, renew: Any, duration: int = 15) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": renew,
            "renewTime": renew,
        },
    }
