"""Agent pieces and real ``l2agent`` processes against the session's real kube-apiserver (each
test in its own namespace, tests/kube.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from agent.k8s.client import install_limits
from agent.k8s.ratelimit import RateLimiter
from tests.integration.agent.cluster import Cluster, agent_credentials, running_cluster
from tests.kube import Kube


def client_of(kubeconfig: Path) -> client.ApiClient:
    """A client as the agent makes one (no urllib3 retries, a generous rate limit)."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.retries = False
    api = client.ApiClient(configuration)
    install_limits(api, RateLimiter(1000, 1000))
    return api


@pytest.fixture
def make_api(kube: Kube) -> Iterator[Callable[[str], Any]]:
    """``make_api(name)``: a client as ServiceAccount ``name`` of the test's namespace, bound to
    the agent's shipped RBAC (its leases live in that namespace)."""
    made: list[Any] = []

    def make(name: str = "agent") -> Any:
        api = client_of(agent_credentials(kube, name))
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(make_api: Callable[[str], Any]) -> Any:
    return make_api("agent")


@pytest.fixture
def cluster(kube: Kube, tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes on the real control plane; agents are started by each test."""
    with running_cluster(kube, tmp_path) as c:
        yield c
