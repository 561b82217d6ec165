"""EndpointSlices as the agent reflects them into the ``endpointslices`` table
(``endpoint_slice_row``): which endpoints can take traffic, and where."""

from __future__ import annotations

from typing import Any

from agent.k8s.objects import ENDPOINT_SLICE_SELECTOR, endpoint_slice_row
from common.tables.endpoint_slices import Backends, EndpointSlice


def slice_of(*endpoints: dict[str, Any], service: str | None = "web") -> dict[str, Any]:
    labels = {} if service is None else {"kubernetes.io/service-name": service}
    return {
        "metadata": {"namespace": "shop", "name": "web-abcde", "labels": labels},
        "addressType": "IPv4",
        "endpoints": list(endpoints),
    }


def ep(node: str | None = None, **conditions: bool) -> dict[str, Any]:
    e: dict[str, Any] = {"addresses": ["10.0.0.1"], "conditions": conditions}
    if node is not None:
        e["nodeName"] = node
    return e


def test_ready_endpoints_count_with_their_nodes() -> None:
    row = endpoint_slice_row(slice_of(ep("node3", ready=True), ep("node1", ready=True)))
    assert row == EndpointSlice(
        "shop", "web-abcde", "web", "IPv4", ("node1", "node3"), endpoints=2, ready=2
    )


def test_absent_conditions_read_as_ready_as_kube_proxy_reads_them() -> None:
    row = endpoint_slice_row(slice_of({"addresses": ["10.0.0.1"], "nodeName": "node2"}))
    assert row is not None and row.nodes == ("node2",) and row.ready == 1


def test_serving_terminating_counts_not_ready_alone_does_not() -> None:
    row = endpoint_slice_row(
        slice_of(
            ep("node1", ready=False, serving=True, terminating=True),
            ep("node2", ready=False, serving=False, terminating=True),  # draining, not serving
            ep("node3", ready=False),  # starting up
            ep("node4", ready=False, terminating=True),  # serving absent: kube-proxy says serving
        )
    )
    assert row is not None
    assert (row.nodes, row.ready, row.terminating, row.endpoints) == (("node1", "node4"), 0, 2, 4)


def test_usable_endpoints_without_node_name_are_counted_not_dropped() -> None:
    row = endpoint_slice_row(slice_of(ep(ready=True), ep("node1", ready=True), ep(ready=False)))
    assert row is not None
    assert (row.nodes, row.ready, row.without_node) == (("node1",), 2, 1)


def test_a_slice_of_no_service_is_not_kept() -> None:
    assert endpoint_slice_row(slice_of(ep("node1"), service=None)) is None


def test_an_empty_slice_is_kept_with_nothing_usable() -> None:
    row = endpoint_slice_row({"metadata": {"namespace": "a", "name": "s", "labels": {
        "kubernetes.io/service-name": "svc"}}, "addressType": "IPv6", "endpoints": None})  # fmt: skip
    assert row == EndpointSlice("a", "s", "svc", "IPv6")


def test_backends_sum_the_slices_of_a_service() -> None:
    v4 = EndpointSlice("a", "s-1", "svc", "IPv4", ("node1",), 2, 1, 0, 1)
    v6 = EndpointSlice("a", "s-2", "svc", "IPv6", ("node2",), 1, 0, 1, 0)
    assert Backends.of([v4, v6]) == Backends(frozenset({"node1", "node2"}), 2, 1)
    assert Backends.of([]) == Backends()


def test_the_watch_leaves_out_headless_and_other_proxies_slices() -> None:
    assert ENDPOINT_SLICE_SELECTOR.split(",") == [
        "kubernetes.io/service-name",
        "!service.kubernetes.io/headless",
        "!service.kubernetes.io/service-proxy-name",
    ]
