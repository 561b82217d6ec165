"""Fixtures: a fresh in-memory API server per test on 127.0.0.1 (ephemeral port), a real
`kubernetes` client pointed at it, and a `kubectl` runner with its own kubeconfig and HOME
(so kubectl's discovery cache never leaks between tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from lab.kubeapi.api import ApiConfig
from lab.kubeapi.server import KubeApiServer, ServerOptions

REPO = Path(__file__).resolve().parents[3]
CRD_DIR = REPO / "deploy" / "crds"


@pytest.fixture
def server() -> Iterator[KubeApiServer]:
    api_server = KubeApiServer(options=ServerOptions(api=ApiConfig(bookmark_period=0.2))).start()
    try:
        yield api_server
    finally:
        api_server.stop()


def make_client(url: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    return client.ApiClient(configuration)


@pytest.fixture
def api(server: KubeApiServer) -> Iterator[client.ApiClient]:
    api_client = make_client(server.url)
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def coordination(api: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(api)


@pytest.fixture
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def policy_crd(server: KubeApiServer) -> dict[str, object]:
    """The CiliumL2AnnouncementPolicy CRD from deploy/crds, installed in-process."""
    crd = yaml.safe_load((CRD_DIR / "ciliuml2announcementpolicies.yaml").read_text())
    return server.api.seed(crd)


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(server: KubeApiServer, tmp_path: Path) -> Kubectl:
    binary = shutil.which("kubectl")
    assert binary is not None, "kubectl is not on PATH (make test installs one when missing)"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server.url}}],
        "users": [{"name": "admin", "user": {"token": "admin"}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
        "current-context": "lab",
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
    }

    def run(
        *args: str,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [binary, *args],
            env={**env, **(extra_env or {})},
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run
