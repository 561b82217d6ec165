"""Lease requests: their own client and connections, the agent's one rate limiter, and the
moment each request left that limiter handed back with the request (``SendTime``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import kubernetes
import pytest

from agent.k8s.client import (
    OTHER_CONNECTIONS,
    LimitedRESTClient,
    install_limits,
    lease_api_client,
    lease_workers,
)
from agent.k8s.leases import KubernetesLeaseAPI
from agent.k8s.ratelimit import RateLimiter
from agent.leases.api import SendTime
from agent.leases.record import LeaseRecord

HOST = "https://192.0.2.1:6443"
LEASE = {
    "apiVersion": "coordination.k8s.io/v1",
    "kind": "Lease",
    "metadata": {"name": "cilium-l2announce-default-svc", "resourceVersion": "7"},
    "spec": {"holderIdentity": "node1", "leaseDurationSeconds": 15},
}


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


@dataclass
class Answer:
    """What urllib3 hands the client."""

    data: bytes
    status: int = 200
    reason: str = "OK"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Sent:
    method: str
    url: str
    timeout: Any
    at: float


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch, ft: FakeTime) -> list[Sent]:
    """Every request that reaches the network, and when (instead of sending it)."""
    sent: list[Sent] = []

    def request(self: Any, method: str, url: str, **kwargs: Any) -> Any:
        sent.append(Sent(method, url, kwargs.get("_request_timeout"), ft.t))
        return kubernetes.client.rest.RESTResponse(Answer(json.dumps(LEASE).encode()))

    monkeypatch.setattr(kubernetes.client.rest.RESTClientObject, "request", request)
    return sent


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


def _client(ft: FakeTime, qps: float = 1, burst: int = 1) -> Any:
    configuration = kubernetes.client.Configuration(host=HOST)
    configuration.connection_pool_maxsize = OTHER_CONNECTIONS
    api = kubernetes.client.ApiClient(configuration)
    install_limits(api, RateLimiter(qps, burst, ft.clock, ft.sleep))
    return api


def test_a_lease_request_says_when_it_left_the_rate_limiter(ft: FakeTime, wire: list[Sent]) -> None:
    leases = KubernetesLeaseAPI(_client(ft), "kube-system", monotonic=ft.clock)
    first, second = SendTime(), SendTime()
    record = leases.get("cilium-l2announce-default-svc", 5.0, sent=first)
    leases.get("cilium-l2announce-default-svc", 5.0, sent=second)  # waits 1 s for its token
    assert record == LeaseRecord("node1", 15, resource_version="7")
    assert (first.at, second.at) == (100.0, 101.0)
    assert [(s.method, s.at, s.timeout) for s in wire] == [("GET", 100.0, 5.0), ("GET", 101.0, 5.0)]
    assert wire[0].url == f"{HOST}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/" + (
        "cilium-l2announce-default-svc"
    )


def test_lease_requests_and_the_others_share_one_rate_limit(ft: FakeTime, wire: list[Sent]) -> None:
    api = _client(ft)
    leases = KubernetesLeaseAPI(api, "kube-system", monotonic=ft.clock)
    sent = SendTime()
    kubernetes.client.CoreV1Api(api).list_namespaced_service("default", _preload_content=False)
    leases.update("cilium-l2announce-default-svc", LeaseRecord("node1", 15), 5.0, sent=sent)
    assert [(s.method, s.at) for s in wire] == [("GET", 100.0), ("PUT", 101.0)]
    assert sent.at == 101.0


def test_a_node_heartbeat_neither_waits_nor_delays_the_others(
    ft: FakeTime, wire: list[Sent]
) -> None:
    leases = KubernetesLeaseAPI(_client(ft), "kube-system", monotonic=ft.clock)
    beat = SendTime()
    leases.get("cilium-l2announce-default-svc", 5.0)  # the one token of the second
    leases.update("l2announcer-node-node1", LeaseRecord("node1", 15), 5.0, sent=beat)
    leases.get("cilium-l2announce-default-svc", 5.0)  # the next token: 1 s, not 2
    assert beat.at == 100.0
    assert [(s.method, s.at) for s in wire] == [("GET", 100.0), ("PUT", 100.0), ("GET", 101.0)]


def test_leases_get_a_connection_per_worker_and_their_own_pool(ft: FakeTime) -> None:
    api = _client(ft, qps=400, burst=400)
    leases, limits = lease_api_client(api)
    assert leases.configuration.connection_pool_maxsize == lease_workers(400) == 20
    assert api.configuration.connection_pool_maxsize == OTHER_CONNECTIONS
    assert leases.configuration.host == HOST
    assert isinstance(leases.rest_client, LimitedRESTClient) and not leases.rest_client.waits
    assert limits is api.rest_client.limits


def test_the_observer_sees_lease_requests_and_their_waits(ft: FakeTime, wire: list[Sent]) -> None:
    seen: list[tuple[str, Any]] = []

    class Observer:
        def on_request(self, verb: str, code: str) -> None:
            seen.append((verb, code))

        def on_throttle(self, seconds: float) -> None:
            seen.append(("throttled", seconds))

    configuration = kubernetes.client.Configuration(host=HOST)
    api = kubernetes.client.ApiClient(configuration)
    install_limits(api, RateLimiter(1, 1, ft.clock, ft.sleep), observer=Observer())
    leases = KubernetesLeaseAPI(api, "kube-system", monotonic=ft.clock)
    leases.get("cilium-l2announce-default-svc", 5.0)
    leases.get("cilium-l2announce-default-svc", 5.0)
    assert seen == [("GET", "200"), ("throttled", pytest.approx(1.0)), ("GET", "200")]
