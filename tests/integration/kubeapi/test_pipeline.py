"""The server calls the pipeline at the documented points and executes every FaultAction and
WatchFault kind. Minimal in-test implementations of the protocols stand in for auth.py,
rbac.py and faults.py (owned elsewhere)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from lab.kubeapi.pipeline import (
    Decision,
    FaultAction,
    Pipeline,
    RequestInfo,
    RequestRecord,
    UserInfo,
    WatchFault,
)
from lab.kubeapi.server import KubeApiServer

NS = "kube-system"


class Tokens:
    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None:
        value = headers.get("authorization", "")
        if not value.startswith("Bearer "):
            return None
        return UserInfo(name=value.removeprefix("Bearer "))


class NoLeaseGets:
    def authorize(self, user: UserInfo, info: RequestInfo) -> Decision:
        if info.resource == "leases" and info.verb == "get" and user.name == "cilium":
            return Decision(
                False,
                f'leases.coordination.k8s.io "{info.name}" is forbidden: User "{user.name}" cannot get '
                f'resource "leases" in API group "coordination.k8s.io" in the namespace "{info.namespace}"',
            )
        return Decision(True)


class Script:
    """Next-N style faults: each queued (predicate, action) fires once on the first match."""

    def __init__(self) -> None:
        self.queue: list[tuple[Callable[[RequestInfo], bool], FaultAction]] = []
        self.watch: WatchFault | None = None
        self.release = threading.Event()
        self.fired: list[FaultAction] = []

    def before(self, user: UserInfo, info: RequestInfo) -> FaultAction | None:
        for n, (matches, action) in enumerate(self.queue):
            if matches(info):
                del self.queue[n]
                self.fired.append(action)
                return action
        return None

    def watch_fault(self, user: UserInfo, info: RequestInfo) -> WatchFault | None:
        return self.watch


class Log:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def record(self, record: RequestRecord) -> None:
        self.records.append(record)


def _verb(verb: str) -> Callable[[RequestInfo], bool]:
    return lambda info: info.verb == verb


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def piped(script: Script, log: Log) -> Iterator[KubeApiServer]:
    pipeline = Pipeline(
        authenticator=Tokens(), authorizer=NoLeaseGets(), faults=script, request_log=log
    )
    with KubeApiServer(pipeline) as server:
        yield server


def _client(server: KubeApiServer, token: str | None = "admin") -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = server.url
    if token is not None:
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def _wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        pause.wait(0.02)


def _lease(name: str = "l") -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {"holderIdentity": "a"}}


def test_unauthenticated_is_401(piped: KubeApiServer, log: Log) -> None:
    leases = client.CoordinationV1Api(_client(piped, token=None))
    with pytest.raises(ApiException) as caught:
        leases.list_namespaced_lease(NS)
    assert caught.value.status == 401
    assert json.loads(caught.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    assert log.records[-1].status == 401


def test_forbidden_is_403_with_the_decision_text(piped: KubeApiServer, log: Log) -> None:
    leases = client.CoordinationV1Api(_client(piped, "cilium"))
    with pytest.raises(ApiException) as caught:
        leases.read_namespaced_lease("cilium-l2announce-default-service-red", NS)
    assert caught.value.status == 403
    body = json.loads(caught.value.body)
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'leases.coordination.k8s.io "cilium-l2announce-default-service-red" is forbidden: User '
        '"system:serviceaccount:kube-system:cilium" cannot get resource "leases" in API group '
        '"coordination.k8s.io" in the namespace "kube-system"'
    ).replace("system:serviceaccount:kube-system:cilium", "cilium")
    assert body["details"] == {
        "name": "cilium-l2announce-default-service-red",
        "group": "coordination.k8s.io",
        "kind": "leases",
    }
    record = log.records[-1]
    assert (record.user, record.status, record.info.verb, record.info.resource) == (
        "cilium",
        403,
        "get",
        "leases",
    )


def test_respond_sends_the_fault_answer_verbatim(piped: KubeApiServer, script: Script) -> None:
    # a POST: urllib3 itself would retry a GET answered 429 with Retry-After
    script.queue.append(
        (
            _verb("create"),
            FaultAction(
                "respond",
                status=429,
                body=b"Too many requests, please try again later.\n",
                content_type="text/plain; charset=utf-8",
                headers={"Retry-After": "1"},
            ),
        )
    )
    leases = client.CoordinationV1Api(_client(piped))
    with pytest.raises(ApiException) as caught:
        leases.create_namespaced_lease(NS, _lease())
    assert caught.value.status == 429
    assert caught.value.headers["Retry-After"] == "1"
    assert caught.value.body == "Too many requests, please try again later.\n"
    assert leases.list_namespaced_lease(NS).items == []


def test_delay_then_normal_answer(piped: KubeApiServer, script: Script, log: Log) -> None:
    script.queue.append((_verb("list"), FaultAction("delay", seconds=0.05)))
    client.CoordinationV1Api(_client(piped)).list_namespaced_lease(NS)
    assert (log.records[-1].status, log.records[-1].fault) == (200, "delay")


def test_commit_then_fail_persists_the_write(piped: KubeApiServer, script: Script) -> None:
    script.queue.append((_verb("create"), FaultAction("commit_then_fail", status=500)))
    leases = client.CoordinationV1Api(_client(piped))
    with pytest.raises(ApiException) as caught:
        leases.create_namespaced_lease(NS, _lease())
    assert caught.value.status == 500
    assert json.loads(caught.value.body)["reason"] == "InternalError"
    assert leases.read_namespaced_lease("l", NS).spec.holder_identity == "a"


def test_commit_then_delay_lets_watchers_see_a_write_before_its_writer(
    piped: KubeApiServer, script: Script, log: Log
) -> None:
    leases = client.CoordinationV1Api(_client(piped))
    lease = leases.create_namespaced_lease(NS, _lease())
    seen: list[tuple[str, str]] = []  # (when, holder) in the order they happened
    order = threading.Lock()
    stream = watch.Watch()

    def watcher() -> None:
        for event in stream.stream(
            leases.list_namespaced_lease,
            NS,
            resource_version=lease.metadata.resource_version,
            timeout_seconds=10,
        ):
            if event["type"] == "MODIFIED":
                with order:
                    seen.append(("watch", event["object"].spec.holder_identity))
                stream.stop()

    reader = threading.Thread(target=watcher, daemon=True)
    reader.start()  # from the create's resourceVersion: it sees the update even if it connects late
    lease.spec.holder_identity = "b"
    script.queue.append((_verb("update"), FaultAction("commit_then_delay", seconds=1.0)))
    updated = leases.replace_namespaced_lease("l", NS, lease)
    with order:
        seen.append(("writer", updated.spec.holder_identity))
    reader.join(10)
    assert seen == [("watch", "b"), ("writer", "b")]
    puts = [r for r in log.records if r.info.verb == "update"]
    assert [(r.status, r.fault) for r in puts] == [(200, "commit_then_delay")]


def test_lost_put_answer_is_retried_by_urllib3_into_a_conflict(
    piped: KubeApiServer, script: Script, log: Log
) -> None:
    leases = client.CoordinationV1Api(_client(piped))
    lease = leases.create_namespaced_lease(NS, _lease())
    lease.spec.holder_identity = "b"
    script.queue.append((_verb("update"), FaultAction("commit_then_fail", status=0)))
    with pytest.raises(ApiException) as caught:
        leases.replace_namespaced_lease("l", NS, lease)
    assert caught.value.status == 409
    assert leases.read_namespaced_lease("l", NS).spec.holder_identity == "b"
    puts = [r for r in log.records if r.info.verb == "update"]
    assert [(r.status, r.fault) for r in puts] == [(0, "commit_then_fail"), (409, "")]


def test_reset_get_is_retried_transparently(piped: KubeApiServer, script: Script, log: Log) -> None:
    script.queue.append((_verb("list"), FaultAction("reset")))
    client.CoordinationV1Api(_client(piped)).list_namespaced_lease(NS)
    lists = [r for r in log.records if r.info.verb == "list"]
    assert [(r.status, r.fault) for r in lists] == [(0, "reset"), (200, "")]


def test_refused_post_is_not_retried(piped: KubeApiServer, script: Script, log: Log) -> None:
    script.queue.append((_verb("create"), FaultAction("refuse")))
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.CoordinationV1Api(_client(piped)).create_namespaced_lease(NS, _lease())
    assert [r.fault for r in log.records if r.info.verb == "create"] == ["refuse"]


def test_stall_holds_the_request_until_the_client_gives_up(
    piped: KubeApiServer, script: Script, log: Log
) -> None:
    script.queue.append((_verb("create"), FaultAction("stall")))
    leases = client.CoordinationV1Api(_client(piped))
    with pytest.raises(urllib3.exceptions.HTTPError):
        leases.create_namespaced_lease(NS, _lease(), _request_timeout=0.5)
    _wait_until(lambda: any(r.fault == "stall" for r in log.records))
    stalled = next(r for r in log.records if r.fault == "stall")
    assert stalled.status == 0
    with pytest.raises(ApiException) as caught:
        leases.read_namespaced_lease("l", NS)
    assert caught.value.status == 404  # the stalled create never ran


def test_stall_released_with_reset(piped: KubeApiServer, script: Script, log: Log) -> None:
    script.queue.append((_verb("create"), FaultAction("stall", release=script.release)))
    leases = client.CoordinationV1Api(_client(piped))
    outcome: list[BaseException] = []

    def create() -> None:
        try:
            leases.create_namespaced_lease(NS, _lease())
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=create, daemon=True)
    thread.start()
    _wait_until(lambda: bool(script.fired))
    script.release.set()
    thread.join(20)
    assert not thread.is_alive()
    assert outcome and isinstance(outcome[0], urllib3.exceptions.HTTPError)


def test_stall_released_with_continue_runs_late(piped: KubeApiServer, script: Script) -> None:
    action = FaultAction("stall", release=script.release, after_release="continue")
    script.queue.append((_verb("create"), action))
    leases = client.CoordinationV1Api(_client(piped))
    created: list[client.V1Lease] = []
    thread = threading.Thread(
        target=lambda: created.append(leases.create_namespaced_lease(NS, _lease())), daemon=True
    )
    thread.start()
    _wait_until(lambda: bool(script.fired))
    with pytest.raises(ApiException):
        leases.read_namespaced_lease("l", NS)
    script.release.set()
    thread.join(20)
    assert created and created[0].metadata.name == "l"


def _watch_once(server: KubeApiServer) -> tuple[client.CoordinationV1Api, str]:
    leases = client.CoordinationV1Api(_client(server))
    leases.create_namespaced_lease(NS, _lease("a"))
    return leases, leases.list_namespaced_lease(NS).metadata.resource_version


def test_watch_expire_fault_raises_410(piped: KubeApiServer, script: Script) -> None:
    leases, rv = _watch_once(piped)
    script.watch = WatchFault("expire")
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(
            leases.list_namespaced_lease, NS, resource_version=rv, timeout_seconds=5
        ):
            pass
    assert caught.value.status == 410


def test_watch_end_fault_ends_the_stream(piped: KubeApiServer, script: Script) -> None:
    leases, rv = _watch_once(piped)
    script.watch = WatchFault("end")
    events = list(
        watch.Watch().stream(
            leases.list_namespaced_lease, NS, resource_version=rv, timeout_seconds=30
        )
    )
    assert events == []


def test_watch_reset_fault_breaks_the_stream(piped: KubeApiServer, script: Script) -> None:
    leases, rv = _watch_once(piped)
    script.watch = WatchFault("reset")
    with pytest.raises(urllib3.exceptions.HTTPError):
        for _ in watch.Watch().stream(
            leases.list_namespaced_lease, NS, resource_version=rv, timeout_seconds=30
        ):
            pass


def test_watch_stall_withholds_events_until_healed(piped: KubeApiServer, script: Script) -> None:
    leases, rv = _watch_once(piped)
    release = threading.Event()
    script.watch = WatchFault("stall", release=release)
    received: list[str] = []
    started = threading.Event()

    def consume() -> None:
        started.set()
        for event in watch.Watch().stream(
            leases.list_namespaced_lease, NS, resource_version=rv, timeout_seconds=30
        ):
            received.append(event["object"].metadata.name)
            return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    started.wait()
    leases.create_namespaced_lease(NS, _lease("b"))
    assert received == []
    release.set()
    thread.join(20)
    assert received == ["b"]
