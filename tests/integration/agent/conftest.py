"""Agent pieces against the Kubernetes API test server over real HTTP (one server per test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.k8s.client import install_limits
from agent.k8s.ratelimit import RateLimiter
from lab.kubeapi.api import ApiConfig
from lab.kubeapi.server import KubeApiServer, ServerOptions
from tests.integration.agent.cluster import Cluster, running_cluster


@pytest.fixture
def server() -> Iterator[KubeApiServer]:
    s = KubeApiServer(options=ServerOptions(api=ApiConfig(bookmark_period=0.2))).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def make_api(server: KubeApiServer) -> Iterator[Callable[[], Any]]:
    made: list[Any] = []

    def make() -> Any:
        configuration = client.Configuration()
        configuration.host = server.url
        api = client.ApiClient(configuration)
        install_limits(api, RateLimiter(1000, 1000))
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(make_api: Callable[[], Any]) -> Any:
    return make_api()  # the server starts with default and kube-system, as a real cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes and the secure API server; agents are started by each test."""
    with running_cluster(tmp_path) as c:
        yield c
