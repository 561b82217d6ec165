"""Per-token partitions over the wire: the partitioned client hangs until its own request
timeout while every other token keeps working; healing restores it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from lab.kubeapi.faults import FaultInjector
from tests.integration.kubeapi_auth.conftest import NAMESPACE, Node, SecureCluster

TIMEOUT = 0.5  # the partitioned client's read timeout; it must give up, not hang


def micro_now() -> str:
    now = time.time()
    micros = int(now * 1_000_000) % 1_000_000 or 1
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{micros:06d}Z"


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll for a condition a test cannot be notified of (a server-side rule being hit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def hits(faults: FaultInjector, rule_id: str) -> int:
    rule = faults.rule(rule_id)
    return 0 if rule is None else rule.hits


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


def is_timeout(err: BaseException | None) -> bool:
    if isinstance(err, urllib3.exceptions.MaxRetryError):
        err = err.reason
    return isinstance(err, urllib3.exceptions.ReadTimeoutError)


def renew(node: Node, name: str) -> client.V1Lease:
    lease = node.leases.read_namespaced_lease(name, NAMESPACE, _request_timeout=30)
    lease.spec.holder_identity = node.user
    lease.spec.renew_time = micro_now()
    return node.leases.replace_namespaced_lease(name, NAMESPACE, lease, _request_timeout=30)


@pytest.fixture
def nodes(cluster: SecureCluster) -> tuple[Node, Node]:
    cluster.grant_leases("node1", "node2", watch=True)
    client.CoordinationV1Api(cluster.admin).create_namespaced_lease(
        NAMESPACE,
        {"metadata": {"name": "shared"}, "spec": {"holderIdentity": "nobody"}},  # type: ignore[arg-type]
    )
    return cluster.node("node1"), cluster.node("node2")


def test_stall_partition_hangs_one_token_and_leaves_others_working(
    cluster: SecureCluster, nodes: tuple[Node, Node]
) -> None:
    node1, node2 = nodes
    faults, log = cluster.security.faults, cluster.security.request_log
    rules = faults.partition(node2.user, mode="stall")

    thread, outcome = in_thread(
        lambda: node2.leases.read_namespaced_lease("shared", NAMESPACE, _request_timeout=TIMEOUT)
    )
    stall_rule = rules[0]
    assert wait_until(lambda: hits(faults, stall_rule) >= 1)

    # While node2's request is held, node1 reads and writes normally.
    mark = log.mark()
    for _ in range(10):
        assert renew(node1, "shared").spec.holder_identity == node1.user
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert "result" not in outcome
    assert is_timeout(outcome.get("error")), repr(outcome.get("error"))

    node1_records = log.query(user=node1.user, after=mark)
    assert len(node1_records) == 20 and {r.status for r in node1_records} == {200}
    stalled = log.wait_for(1, user=node2.user, fault="stall")
    assert stalled and {r.status for r in stalled} == {0}
    assert log.count(user=node2.user, status=200) == 0

    # Healing lets node2 through again, with no restart of client or server.
    assert faults.heal(node2.user) == 2
    assert renew(node2, "shared").spec.holder_identity == node2.user


def test_stalled_watch_stops_delivering_while_other_watchers_see_events(
    cluster: SecureCluster, nodes: tuple[Node, Node]
) -> None:
    node1, node2 = nodes
    faults = cluster.security.faults
    started = {node1.user: threading.Event(), node2.user: threading.Event()}

    def first_modified(node: Node, timeout: float) -> str:
        stream = watch.Watch().stream(
            node.leases.list_namespaced_lease,
            NAMESPACE,
            _request_timeout=timeout,
        )
        for event in stream:
            if event["type"] == "ADDED":
                started[node.user].set()
            if event["type"] == "MODIFIED":
                return str(event["object"].spec.holder_identity)
        return ""

    watcher1, seen1 = in_thread(lambda: first_modified(node1, 30))
    watcher2, seen2 = in_thread(lambda: first_modified(node2, 1.0))
    assert started[node1.user].wait(30) and started[node2.user].wait(30)

    _, stream_rule = faults.partition(node2.user, mode="stall")
    # The server consults watch faults between events and on idle ticks: wait until node2's
    # stream has seen the stall, so the write below happens after the partition took hold.
    assert wait_until(lambda: hits(faults, stream_rule) >= 1)
    renew(node1, "shared")

    watcher1.join(timeout=60)
    assert seen1.get("result") == node1.user
    watcher2.join(timeout=60)
    assert not watcher2.is_alive()
    assert "result" not in seen2, "a stalled watch delivered an event"
    error = seen2.get("error")
    assert isinstance(
        error, urllib3.exceptions.ReadTimeoutError | urllib3.exceptions.ProtocolError
    ), repr(error)


def test_refuse_partition_closes_unanswered_for_that_token_only(
    cluster: SecureCluster, nodes: tuple[Node, Node]
) -> None:
    node1, node2 = nodes
    faults, log = cluster.security.faults, cluster.security.request_log
    faults.partition(node2.user, mode="refuse")
    with pytest.raises(urllib3.exceptions.HTTPError):
        node2.leases.read_namespaced_lease("shared", NAMESPACE, _request_timeout=30)
    # urllib3 re-sent the GET three more times, each closed unanswered.
    assert log.count(user=node2.user, fault="refuse") == 4
    assert renew(node1, "shared").spec.holder_identity == node1.user
    faults.heal(node2.user)
    assert renew(node2, "shared").spec.holder_identity == node2.user


def test_commit_then_fail_applies_the_write_and_the_retry_sees_409(
    cluster: SecureCluster, nodes: tuple[Node, Node]
) -> None:
    """Spec 2.4 L13: a PUT whose response is lost is re-sent by urllib3 with a stale RV."""
    from lab.kubeapi.faults import CommitThenFail, Match

    node1, _ = nodes
    faults = cluster.security.faults
    faults.add(CommitThenFail(None), Match.build(user=node1.user, verb="update"), times=1)
    with pytest.raises(client.ApiException) as err:
        renew(node1, "shared")
    assert err.value.status == 409
    current = node1.leases.read_namespaced_lease("shared", NAMESPACE)
    assert current.spec.holder_identity == node1.user  # the first attempt was committed
