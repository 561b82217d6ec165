"""The elector's LeaseAPI, lease GC and the lease reflector against the real apiserver, as a
ServiceAccount with the agent's shipped RBAC, in the test's namespace."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from agent.k8s.leases import LEASE_MAPPING, KubernetesLeaseAPI
from agent.k8s.reflector import KubernetesSource, Reflector
from agent.leases.api import Conflict
from agent.leases.election import Timings
from agent.leases.elector import Elector
from agent.leases.record import LeaseRecord, micro_time, record_from_row
from common.tables.leases import LEASES
from statedb import Database
from tests.kube import Kube

NAME = "cilium-l2announce-default-service-red"


def _rec(holder: str, rv: str = "") -> LeaseRecord:
    t = micro_time(time.time())
    return LeaseRecord(holder, 15, t, t, 0, rv)


def test_create_get_update_and_conflict(api: Any, kube: Kube) -> None:
    leases = KubernetesLeaseAPI(api, kube.namespace)
    assert leases.get(NAME, 5) is None
    created = leases.create(NAME, _rec("node1"), 5)
    assert created.holder == "node1" and created.resource_version
    with pytest.raises(Conflict):
        leases.create(NAME, _rec("node2"), 5)
    updated = leases.update(NAME, _rec("node1", created.resource_version), 5)
    assert updated.resource_version != created.resource_version
    with pytest.raises(Conflict):
        leases.update(NAME, _rec("node2", created.resource_version), 5)
    got = leases.get(NAME, 5)
    assert got is not None and got.holder == "node1"
    lease: Any = kube.coordination.read_namespaced_lease(NAME, kube.namespace)
    assert lease.spec.holder_identity == "node1"
    assert lease.spec.lease_duration_seconds == 15


def test_gc_deletes_only_released_leases_of_ours(api: Any, kube: Kube) -> None:
    leases = KubernetesLeaseAPI(api, kube.namespace)
    leases.create(NAME, _rec(""), 5)
    leases.create(NAME + "-held", _rec("node1"), 5)
    other: Any = {"metadata": {"name": "someone-elses"}, "spec": {}}
    kube.coordination.create_namespaced_lease(kube.namespace, other)
    assert leases.collect_garbage() == 1
    listed: Any = kube.coordination.list_namespaced_lease(kube.namespace)
    names = {item.metadata.name for item in listed.items}
    assert names == {NAME + "-held", "someone-elses"}


def test_two_electors_fail_over_on_release_through_the_real_api(
    kube: Kube, make_api: Callable[[str], Any]
) -> None:
    # A lease far longer than the wait for node2 below: it can only lead that soon on the release.
    timings = Timings(60.0, 1.0, 0.2)
    events: list[tuple[str, bool, float]] = []
    cond = threading.Condition()
    electors: dict[str, Elector] = {}
    reflectors = []
    dbs = []

    def on_change(node: str) -> Callable[[str, bool, str], None]:
        def cb(name: str, leading: bool, reason: str) -> None:
            with cond:
                events.append((node, leading, time.monotonic()))
                cond.notify_all()

        return cb

    try:
        for node in ("node1", "node2"):
            a = make_api(node)
            e = Elector(KubernetesLeaseAPI(a, kube.namespace), node, timings, on_change(node))
            electors[node] = e
            db = Database.open(None, [LEASES])
            dbs.append(db)

            def feed(kind: str, obj: dict[str, Any], e: Elector = e) -> None:
                row = LEASE_MAPPING.to_row(obj)
                name = obj["metadata"]["name"]
                e.observe(name, None if kind == "DELETED" or row is None else record_from_row(row))

            src = KubernetesSource(
                "leases", client.CoordinationV1Api(a).list_namespaced_lease, kube.namespace
            )
            r = Reflector(db, src, LEASE_MAPPING, on_event=feed)
            r.start()
            reflectors.append(r)
            e.start()
        electors["node1"].want(NAME, True)
        with cond:
            assert cond.wait_for(lambda: ("node1", True) in [(n, x) for n, x, _ in events], 10)
        electors["node2"].want(NAME, True)
        time.sleep(0.6)
        electors["node1"].stop(release_timeout=1.0)
        released = time.monotonic()
        with cond:
            assert cond.wait_for(lambda: ("node2", True) in [(n, x) for n, x, _ in events], 10)
        took = next(t for n, x, t in events if n == "node2" and x) - released
        assert took < timings.lease_duration, "taken over on seeing the release"
        final: Any = kube.coordination.read_namespaced_lease(NAME, kube.namespace)
        assert final.spec.holder_identity == "node2"
        assert final.spec.lease_transitions == 1
    finally:
        for e in electors.values():
            e.stop(release_timeout=0.5)
        for r in reflectors:
            r.stop(timeout=1)
        for db in dbs:
            db.close()
