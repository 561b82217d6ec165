"""Lease semantics the agent's election rests on, exercised with the real 37.0.2 client:
optimistic concurrency, AlreadyExists on racing creates, MicroTime strictness, PUT rules."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

NS = "kube-system"


def _lock(api: client.ApiClient, name: str, identity: str) -> LeaseLock:
    lock = LeaseLock(name, NS, identity)
    lock.api_instance = client.CoordinationV1Api(api)
    return lock


def _record(identity: str, when: dt.datetime) -> LeaderElectionRecord:
    return LeaderElectionRecord(identity, "15", str(when), str(when))


def _local_now() -> dt.datetime:
    now = dt.datetime.now()
    return now.replace(microsecond=now.microsecond or 1)


def test_racing_lease_updates_exactly_one_wins(api: client.ApiClient) -> None:
    name = "cilium-l2announce-default-web"
    assert _lock(api, name, "node0").create(name, NS, _record("node0", _local_now()))
    racers = [_lock(api, name, f"node{i}") for i in (1, 2)]
    for racer in racers:
        ok, _ = racer.get(name, NS)
        assert ok
    results = [racer.update(name, NS, _record(racer.identity, _local_now())) for racer in racers]
    assert sorted(results) == [False, True]

    # the loser's PUT, repeated by hand, is a Conflict with the real message
    loser = racers[results.index(False)]
    with pytest.raises(ApiException) as caught:
        client.CoordinationV1Api(api).replace_namespaced_lease(name, NS, loser.lease_reference)
    assert caught.value.status == 409
    body = json.loads(caught.value.body)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    assert body["details"] == {"name": name, "group": "coordination.k8s.io", "kind": "leases"}


def test_racing_creates_one_201_one_already_exists(api: client.ApiClient) -> None:
    name = "race-create"
    leases = client.CoordinationV1Api(api)
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def create(identity: str) -> None:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1LeaseSpec(holder_identity=identity, lease_duration_seconds=15),
        )
        barrier.wait()
        try:
            outcomes.append(leases.create_namespaced_lease(NS, body))
        except ApiException as error:
            outcomes.append(error)

    threads = [threading.Thread(target=create, args=(f"n{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [o for o in outcomes if isinstance(o, ApiException)]
    assert len(errors) == 1 and len(outcomes) == 2
    assert errors[0].status == 409
    body = json.loads(errors[0].body)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == f'leases.coordination.k8s.io "{name}" already exists'


def test_whole_second_lease_time_is_rejected_with_400(api: client.ApiClient) -> None:
    """A frozen/integer clock makes the client send `...:20+00:00` without a fraction."""
    whole = dt.datetime.fromtimestamp(1_700_000_000)
    lock = _lock(api, "whole-second", "node1")
    assert lock.create("whole-second", NS, _record("node1", whole)) is False

    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="whole-second"),
        spec=lock.get_lease_spec(_record("node1", whole)),
    )
    with pytest.raises(ApiException) as caught:
        client.CoordinationV1Api(api).create_namespaced_lease(NS, body)
    assert caught.value.status == 400
    assert "cannot be handled as a Lease" in json.loads(caught.value.body)["message"]


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T00:00:00.123Z",
        "2024-01-01T00:00:00.1234567Z",
        "2024-01-01T00:00:00.123456",
    ],
)
def test_microtime_needs_exactly_six_digits_and_a_zone(api: client.ApiClient, value: str) -> None:
    # The typed API would re-serialize the time through datetime; the custom-objects API sends
    # the dict verbatim, so the server sees exactly `value`.
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "mt"}}
    body["spec"] = {"renewTime": value}
    objects = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as caught:
        objects.create_namespaced_custom_object("coordination.k8s.io", "v1", NS, "leases", body)
    assert caught.value.status == 400
    body["spec"] = {"renewTime": "2024-01-01T00:00:00.123456Z"}
    objects.create_namespaced_custom_object("coordination.k8s.io", "v1", NS, "leases", body)


def test_microtime_output_is_utc_with_six_digits(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    body = {"metadata": {"name": "mt"}, "spec": {"renewTime": "2024-01-01T02:00:00.123456+02:00"}}
    leases.create_namespaced_lease(NS, body)
    raw = leases.read_namespaced_lease("mt", NS, _preload_content=False)
    assert json.loads(raw.data)["spec"]["renewTime"] == "2024-01-01T00:00:00.123456Z"


def test_put_rules_for_leases_and_nodes(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    core = client.CoreV1Api(api)
    # PUT of a missing Lease creates it
    created = leases.replace_namespaced_lease(
        "fresh", NS, {"metadata": {"name": "fresh"}, "spec": {"holderIdentity": "a"}}
    )
    assert created.metadata.resource_version
    # PUT without resourceVersion: 422 naming metadata.resourceVersion
    with pytest.raises(ApiException) as caught:
        leases.replace_namespaced_lease("fresh", NS, {"metadata": {"name": "fresh"}, "spec": {}})
    assert caught.value.status == 422
    body = json.loads(caught.value.body)
    assert body["message"] == (
        'leases.coordination.k8s.io "fresh" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0x0: must be specified for an update",
            "field": "metadata.resourceVersion",
        }
    ]
    # PUT of a missing Node is 404 (no create-on-update)
    with pytest.raises(ApiException) as caught:
        core.replace_node("ghost", {"metadata": {"name": "ghost"}})
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["message"] == 'nodes "ghost" not found'


def test_lease_status_codes_and_validation(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    with pytest.raises(ApiException) as caught:
        leases.create_namespaced_lease(
            NS, {"metadata": {"name": "bad"}, "spec": {"leaseDurationSeconds": 0}}
        )
    assert caught.value.status == 422
    with pytest.raises(ApiException) as caught:
        leases.create_namespaced_lease("nowhere", {"metadata": {"name": "x"}})
    assert caught.value.status == 404
    assert json.loads(caught.value.body)["message"] == 'namespaces "nowhere" not found'
    with pytest.raises(ApiException) as caught:
        leases.create_namespaced_lease(NS, {"metadata": {"name": "x", "resourceVersion": "5"}})
    assert caught.value.status == 500
    assert json.loads(caught.value.body)["message"] == (
        "resourceVersion should not be set on objects to be created"
    )


def test_no_op_update_keeps_resource_version(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(
        NS, {"metadata": {"name": "same"}, "spec": {"holderIdentity": "a"}}
    )
    again = leases.replace_namespaced_lease("same", NS, lease)
    assert again.metadata.resource_version == lease.metadata.resource_version
    lease.spec.holder_identity = "b"
    changed = leases.replace_namespaced_lease("same", NS, lease)
    assert int(changed.metadata.resource_version) > int(lease.metadata.resource_version)
    assert changed.metadata.generation is None


def test_delete_lease_returns_status(api: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(NS, {"metadata": {"name": "gone"}})
    answer = leases.delete_namespaced_lease("gone", NS)
    assert answer == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "gone",
            "group": "coordination.k8s.io",
            "kind": "leases",
            "uid": lease.metadata.uid,
        },
    }
    with pytest.raises(ApiException) as caught:
        leases.delete_namespaced_lease("gone", NS)
    assert caught.value.status == 404
