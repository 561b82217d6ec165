"""The request log: filters, time windows on an injected clock, eviction, waiting."""

from __future__ import annotations

import threading

import pytest

from lab.kubeapi.pipeline import RequestInfo, RequestRecord
from lab.kubeapi.requestlog import MemoryRequestLog, Query, record_to_json

NODE1 = "system:serviceaccount:kube-system:node1"
NODE2 = "system:serviceaccount:kube-system:node2"


def rec(
    t: float,
    user: str,
    verb: str,
    name: str = "x",
    status: int = 200,
    fault: str = "",
    resource: str = "leases",
    sub: str = "",
) -> RequestRecord:
    group = "coordination.k8s.io" if resource == "leases" else ""
    info = RequestInfo(
        method="PUT" if verb == "update" else "GET",
        path=f"/.../{resource}/{name}",
        verb=verb,
        api_group=group,
        api_version="v1",
        resource=resource,
        subresource=sub,
        namespace="kube-system",
        name=name,
    )
    return RequestRecord(time=t, user=user, info=info, status=status, duration=0.001, fault=fault)


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def log(clock: list[float]) -> MemoryRequestLog:
    log = MemoryRequestLog(clock=lambda: clock[0])
    log.record(rec(990.0, NODE1, "get"))
    log.record(rec(991.0, NODE1, "update"))
    log.record(rec(996.0, NODE2, "get"))
    log.record(rec(997.0, NODE2, "update", status=409))
    log.record(rec(998.0, NODE2, "update", name="y"))
    log.record(rec(999.0, NODE2, "update", status=0, fault="stall"))
    log.record(rec(999.5, NODE1, "update", resource="services", sub="status", name="red"))
    return log


def test_query_by_verb_resource_name_user_since(log: MemoryRequestLog) -> None:
    found = log.query(verb="update", resource="leases", name="x", user=NODE2, since=5.0)
    assert [r.time for r in found] == [997.0, 999.0]
    assert log.count(verb="update", resource="leases", name="x", user=NODE2, since=2.5) == 1


def test_results_are_oldest_first_and_last_is_newest(log: MemoryRequestLog) -> None:
    times = [r.time for r in log.query()]
    assert times == sorted(times)
    last = log.last(user=NODE2)
    assert last is not None and last.time == 999.0


def test_status_and_fault_filters(log: MemoryRequestLog) -> None:
    assert log.count(status=409) == 1
    assert log.count(status=(200, 409)) == 6
    assert log.count(fault="stall") == 1
    assert log.count(fault="") == 6


def test_several_verbs(log: MemoryRequestLog) -> None:
    assert log.count(verb=("get", "update"), resource="leases") == 6
    assert log.count(verb=["get"]) == 2  # lists from JSON work too


def test_subresource_filter(log: MemoryRequestLog) -> None:
    assert log.count(resource="services/status") == 1
    assert log.count(resource="services") == 1
    assert log.count(resource="leases/status") == 0


def test_absolute_windows_and_mark(log: MemoryRequestLog, clock: list[float]) -> None:
    assert log.count(after=996.0, until=999.0) == 3
    mark = log.mark()
    assert log.count(after=mark) == 0
    clock[0] = 1001.0
    log.record(rec(1001.0, NODE1, "get"))
    assert log.count(after=mark) == 1


def test_users(log: MemoryRequestLog) -> None:
    assert log.users() == [NODE1, NODE2]
    assert log.users(verb="update", status=200, since=3.0) == [NODE2, NODE1]


def test_query_object(log: MemoryRequestLog) -> None:
    assert log.count(Query(verb="update", user=NODE1)) == 2


def test_unknown_filter_is_an_error(log: MemoryRequestLog) -> None:
    with pytest.raises(ValueError):
        log.query(verbs="update")


def test_capacity_evicts_oldest_and_counts_dropped() -> None:
    log = MemoryRequestLog(capacity=3)
    for i in range(5):
        log.record(rec(float(i), NODE1, "get"))
    assert [r.time for r in log.records()] == [2.0, 3.0, 4.0]
    assert log.recorded == 5 and log.dropped == 2 and log.capacity == 3
    log.clear()
    assert log.records() == [] and log.dropped == 0


def test_wait_for_returns_when_records_arrive() -> None:
    log = MemoryRequestLog()
    started = threading.Event()

    def writer() -> None:
        started.wait()
        for i in range(3):
            log.record(rec(float(i), NODE2, "update"))

    thread = threading.Thread(target=writer)
    thread.start()
    started.set()
    found = log.wait_for(3, timeout=30.0, user=NODE2, verb="update")
    thread.join()
    assert len(found) == 3


def test_wait_for_gives_up_with_what_it_has() -> None:
    log = MemoryRequestLog()
    log.record(rec(0.0, NODE1, "get"))
    assert len(log.wait_for(2, timeout=0.01, user=NODE1)) == 1


def test_record_to_json() -> None:
    data = record_to_json(rec(5.0, NODE1, "update", status=409, fault="respond"))
    assert data["verb"] == "update" and data["status"] == 409 and data["user"] == NODE1
    assert data["api_group"] == "coordination.k8s.io" and data["fault"] == "respond"
