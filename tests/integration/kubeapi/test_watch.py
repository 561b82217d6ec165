"""Watch semantics with `kubernetes.watch.Watch`: synthetic initial events, resume, in-stream
410 after compaction, selector transitions, bookmarks, timeouts and reconnects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from lab.kubeapi.api import ApiConfig
from lab.kubeapi.pipeline import Pipeline, RequestRecord
from lab.kubeapi.server import KubeApiServer, ServerOptions
from tests.integration.kubeapi.conftest import make_client


def _node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def _in_background(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_watch_without_rv_sends_added_for_existing_objects(core: client.CoreV1Api) -> None:
    created = [core.create_node(_node(f"n{i}")) for i in range(3)]
    seen = []
    for event in watch.Watch().stream(core.list_node, timeout_seconds=1):
        seen.append(
            (
                event["type"],
                event["object"].metadata.name,
                event["object"].metadata.resource_version,
            )
        )
        if len(seen) == 3:
            break
    assert seen == [("ADDED", n.metadata.name, n.metadata.resource_version) for n in created]


def test_resume_from_list_rv_sees_every_later_change(core: client.CoreV1Api) -> None:
    core.create_node(_node("n1"))
    listed = core.list_node()
    core.patch_node("n1", {"metadata": {"labels": {"x": "y"}}})
    core.create_node(_node("n2"))
    core.delete_node("n1")
    events = []
    for event in watch.Watch().stream(
        core.list_node, resource_version=listed.metadata.resource_version, timeout_seconds=1
    ):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 3:
            break
    assert events == [("MODIFIED", "n1"), ("ADDED", "n2"), ("DELETED", "n1")]


def test_compacted_history_gives_in_stream_410(
    server: KubeApiServer, core: client.CoreV1Api
) -> None:
    core.create_node(_node("n1"))
    old = core.list_node().metadata.resource_version
    core.create_node(_node("n2"))
    server.store.compact()
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(core.list_node, resource_version=old):
            pass
    assert caught.value.status == 410
    assert "too old resource version" in str(caught.value.reason)


def test_relabel_out_of_selector_is_deleted_with_old_labels(core: client.CoreV1Api) -> None:
    core.create_node(_node("n1", role="edge"))
    start = core.list_node().metadata.resource_version
    updated = core.patch_node("n1", {"metadata": {"labels": {"role": "core"}}})
    events = []
    for event in watch.Watch().stream(
        core.list_node, label_selector="role=edge", resource_version=start, timeout_seconds=1
    ):
        events.append(event)
        break
    assert events[0]["type"] == "DELETED"
    gone = events[0]["object"]
    assert gone.metadata.labels == {"role": "edge"}
    assert gone.metadata.resource_version == updated.metadata.resource_version


def test_relabel_into_selector_is_added(core: client.CoreV1Api) -> None:
    core.create_node(_node("n1", role="core"))
    start = core.list_node().metadata.resource_version
    core.patch_node("n1", {"metadata": {"labels": {"role": "edge"}}})
    for event in watch.Watch().stream(
        core.list_node, label_selector="role=edge", resource_version=start, timeout_seconds=1
    ):
        assert event["type"] == "ADDED"
        break
    else:
        pytest.fail("no event")


def test_bookmarks_are_dicts(core: client.CoreV1Api) -> None:
    core.create_node(_node("n1"))
    start = core.list_node().metadata.resource_version
    for event in watch.Watch().stream(
        core.list_node, resource_version=start, allow_watch_bookmarks=True, timeout_seconds=5
    ):
        assert event["type"] == "BOOKMARK"
        assert isinstance(event["object"], dict)
        assert event["object"]["kind"] == "Node"
        assert event["object"]["metadata"]["resourceVersion"] == start
        break
    else:
        pytest.fail("no bookmark before the timeout")


def test_no_bookmarks_unless_asked(core: client.CoreV1Api) -> None:
    start = core.list_node().metadata.resource_version
    events = list(watch.Watch().stream(core.list_node, resource_version=start, timeout_seconds=1))
    assert events == []


def test_timeout_ends_the_generator(core: client.CoreV1Api) -> None:
    core.create_node(_node("n1"))
    events = list(watch.Watch().stream(core.list_node, timeout_seconds=1))
    assert [e["type"] for e in events] == ["ADDED"]


class _Recorder:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def record(self, record: RequestRecord) -> None:
        self.records.append(record)


def test_without_timeout_the_client_reconnects_with_last_rv() -> None:
    """The server ends each watch after a short random time; the client re-watches from the
    last RV it saw and misses nothing."""
    log = _Recorder()
    options = ServerOptions(api=ApiConfig(watch_timeout_min=0.2, watch_timeout_max=0.3))
    with KubeApiServer(Pipeline(request_log=log), options) as server:
        api = make_client(server.url)
        core = client.CoreV1Api(api)
        core.create_node(_node("n0"))
        watcher = watch.Watch()
        names: list[str] = []
        done = threading.Event()

        def consume() -> None:
            for event in watcher.stream(core.list_node):
                names.append(event["object"].metadata.name)
                if len(names) == 3:
                    done.set()
                    watcher.stop()

        thread = _in_background(consume)

        def watches() -> list[RequestRecord]:
            return [r for r in log.records if r.info.verb == "watch"]

        _wait_until(lambda: len(watches()) >= 2)
        core.create_node(_node("n1"))
        _wait_until(lambda: len(watches()) >= 3)
        core.create_node(_node("n2"))
        assert done.wait(30)
        thread.join(5)
        api.close()
    assert names == ["n0", "n1", "n2"]
    resumed = watches()[1].info.query
    assert resumed["resourceVersion"][0] != "" and "timeoutSeconds" not in resumed


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    event = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        event.wait(0.02)


def test_send_initial_events_ends_with_annotated_bookmark(core: client.CoreV1Api) -> None:
    core.create_node(_node("n1"))
    events = []
    for event in watch.Watch().stream(
        core.list_node,
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        timeout_seconds=2,
    ):
        events.append(event)
        if event["type"] == "BOOKMARK":
            break
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    annotations = events[1]["object"]["metadata"]["annotations"]
    assert annotations == {"k8s.io/initial-events-end": "true"}


def test_watch_parameter_errors_are_plain_answers(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(core.list_node, label_selector="a in ()", timeout_seconds=1):
            pass
    assert caught.value.status == 400
    with pytest.raises(ApiException) as caught:
        for _ in watch.Watch().stream(core.list_node, send_initial_events=True, timeout_seconds=1):
            pass
    assert caught.value.status == 422


def test_watch_of_custom_resources(custom: client.CustomObjectsApi, policy_crd: object) -> None:
    group, version, plural = "cilium.io", "v2alpha1", "ciliuml2announcementpolicies"
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": "p"},
    }
    custom.create_cluster_custom_object(group, version, plural, body)
    for event in watch.Watch().stream(
        custom.list_cluster_custom_object, group, version, plural, timeout_seconds=1
    ):
        assert event["type"] == "ADDED"
        assert event["object"]["kind"] == "CiliumL2AnnouncementPolicy"
        break
    else:
        pytest.fail("no event")


def test_watch_with_metadata_name_selector_sees_only_that_object(core: client.CoreV1Api) -> None:
    core.create_node(_node("n1"))
    core.create_node(_node("n2"))
    names = [
        event["object"].metadata.name
        for event in watch.Watch().stream(
            core.list_node, field_selector="metadata.name=n2", timeout_seconds=1
        )
    ]
    assert names == ["n2"]
