"""One client cut off from the real apiserver (tests/faultproxy.py), as the agent's client is
configured (no urllib3 retries, a timeout on every request): a stalled connection gives up on the
client's own timeout instead of hanging, a reset one fails at once, and every other client keeps
working; healing restores the cut-off one without a new client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kubernetes import client

from agent.leases.record import micro_time
from tests.integration.agent.cluster import agent_credentials, proxy_to, through
from tests.integration.agent.conftest import client_of
from tests.kube import Kube

TIMEOUT = 0.5  # the cut-off client's read timeout; it must give up, not hang


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as err:  # the outcome is what the test inspects
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def renew(leases: Any, ns: str, holder: str) -> Any:
    lease = leases.read_namespaced_lease("shared", ns, _request_timeout=30)
    lease.spec.holder_identity = holder
    lease.spec.renew_time = micro_time(time.time())
    return leases.replace_namespaced_lease("shared", ns, lease, _request_timeout=30)


class Pair:
    """node1 talks to the apiserver directly, node2 through a FaultProxy."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.proxy = proxy_to(kube)
        self.apis = [
            client_of(agent_credentials(kube, "node1")),
            client_of(through(agent_credentials(kube, "node2"), self.proxy)),
        ]
        for api in self.apis:
            kube.on_cleanup(api.close)
        self.node1: Any = client.CoordinationV1Api(self.apis[0])
        self.node2: Any = client.CoordinationV1Api(self.apis[1])
        kube.coordination.create_namespaced_lease(
            kube.namespace,
            {"metadata": {"name": "shared"}, "spec": {"holderIdentity": "nobody"}},  # type: ignore[arg-type]
        )

    def node2_requests(self, since: float) -> list[Any]:
        return [e for e in self.kube.audit(since) if e.user == self.kube.user("node2")]


@pytest.fixture
def pair(kube: Kube) -> Pair:
    return Pair(kube)


def test_a_stalled_client_times_out_while_others_work(kube: Kube, pair: Pair) -> None:
    ns = kube.namespace
    assert renew(pair.node2, ns, "node2").spec.holder_identity == "node2"  # a kept-alive connection
    pair.proxy.stall()
    cut = time.time()
    thread, outcome = in_thread(
        lambda: pair.node2.read_namespaced_lease("shared", ns, _request_timeout=TIMEOUT)
    )
    # While node2's request hangs, node1 reads and writes normally.
    for _ in range(10):
        assert renew(pair.node1, ns, "node1").spec.holder_identity == "node1"
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "result" not in outcome
    assert isinstance(outcome.get("error"), urllib3.exceptions.ReadTimeoutError), outcome
    # A new connection stalls too: accepted, never answered.
    with pytest.raises(urllib3.exceptions.HTTPError):
        pair.node2.read_namespaced_lease("shared", ns, _request_timeout=TIMEOUT)
    time.sleep(0.5)
    assert pair.node2_requests(cut) == [], "a stalled request reached the apiserver"

    # Healing lets node2 through again, with no new client.
    pair.proxy.heal()
    assert renew(pair.node2, ns, "node2").spec.holder_identity == "node2"


def test_a_stalled_watch_delivers_nothing_while_other_watchers_see_events(
    kube: Kube, pair: Pair
) -> None:
    ns = kube.namespace
    started = [threading.Event(), threading.Event()]

    def first_modified(i: int, leases: Any, timeout: float) -> str:
        resp = leases.list_namespaced_lease(
            ns, watch=True, _preload_content=False, _request_timeout=(5, timeout)
        )
        try:
            for line in resp:
                event = json.loads(line)
                if event["type"] == "ADDED":
                    started[i].set()
                if event["type"] == "MODIFIED":
                    return str(event["object"]["spec"]["holderIdentity"])
        finally:
            resp.release_conn()
        return ""

    watcher1, seen1 = in_thread(lambda: first_modified(0, pair.node1, 30))
    watcher2, seen2 = in_thread(lambda: first_modified(1, pair.node2, 2.0))
    assert started[0].wait(30) and started[1].wait(30)
    pair.proxy.stall()
    renew(pair.node1, ns, "node1")

    watcher1.join(timeout=30)
    assert seen1.get("result") == "node1"
    watcher2.join(timeout=30)
    assert not watcher2.is_alive()
    assert "result" not in seen2, "a stalled watch delivered an event"
    error = seen2.get("error")
    assert isinstance(
        error, urllib3.exceptions.ReadTimeoutError | urllib3.exceptions.ProtocolError
    ), repr(error)


def test_a_reset_client_fails_at_once_while_others_work(kube: Kube, pair: Pair) -> None:
    ns = kube.namespace
    assert renew(pair.node2, ns, "node2").spec.holder_identity == "node2"  # a kept-alive connection
    pair.proxy.reset()
    assert pair.proxy.resets >= 1
    cut = time.time()
    for _ in range(2):  # the kept-alive connection was reset; a new one is refused
        with pytest.raises(urllib3.exceptions.HTTPError) as err:
            pair.node2.read_namespaced_lease("shared", ns, _request_timeout=10)
        assert not isinstance(err.value, urllib3.exceptions.ReadTimeoutError)
    assert renew(pair.node1, ns, "node1").spec.holder_identity == "node1"
    time.sleep(0.5)
    assert pair.node2_requests(cut) == []
    pair.proxy.heal()
    assert renew(pair.node2, ns, "node2").spec.holder_identity == "node2"
