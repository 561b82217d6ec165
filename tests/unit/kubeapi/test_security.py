"""The wiring helper: one pipeline with tokens, faults and the log; RBAC switched on later."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.kubeapi.auth import service_account_user
from lab.kubeapi.pipeline import AllowAll
from lab.kubeapi.rbac import RBACAuthorizer
from lab.kubeapi.security import Security
from tests.unit.kubeapi.infos import lease_info

LEASE_GET = lease_info("get")


class EmptyStore:
    def objects(self, resource: str, namespace: str = "") -> tuple[list[dict[str, object]], int]:
        return [], 1


def test_pipeline_pieces_are_the_same_objects(tmp_path: Path) -> None:
    security = Security.create(tmp_path / "pki", admin_token="admin-token")
    assert security.pipeline.authenticator is security.authenticator
    assert security.pipeline.faults is security.faults
    assert security.pipeline.request_log is security.request_log
    assert security.control.faults is security.faults
    admin = security.authenticator.authenticate({"Authorization": "Bearer admin-token"})
    assert admin is not None and "system:masters" in admin.groups
    assert security.tls.ca.exists() and security.tls.key.exists()


def test_rbac_is_off_until_enabled(tmp_path: Path) -> None:
    security = Security.create(tmp_path / "pki")
    node = service_account_user("kube-system", "node1")
    assert isinstance(security.pipeline.authorizer, AllowAll)
    assert security.pipeline.authorizer.authorize(node, LEASE_GET).allowed
    assert isinstance(security.enable_rbac(EmptyStore()), RBACAuthorizer)
    assert not security.pipeline.authorizer.authorize(node, LEASE_GET).allowed
    security.disable_rbac()
    assert security.pipeline.authorizer.authorize(node, LEASE_GET).allowed


def test_credentials_files(tmp_path: Path) -> None:
    security = Security.create(tmp_path / "pki")
    kubeconfig = security.write_admin_kubeconfig(
        tmp_path / "admin.kubeconfig", "https://127.0.0.1:1"
    )
    assert security.admin_token in kubeconfig.read_text()
    incluster = security.write_service_account(
        tmp_path / "sa", "https://127.0.0.1:1", "kube-system", "n"
    )
    token = incluster.token_path.read_text()
    user = security.authenticator.user_for_token(token)
    assert user is not None and user.name == "system:serviceaccount:kube-system:n"
    assert incluster.ca_path.read_bytes() == security.ca_pem
    assert security.user_of(token) == "system:serviceaccount:kube-system:n"
    with pytest.raises(KeyError):
        security.user_of("nope")
