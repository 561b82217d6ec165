"""The endpoints gate (agent/announcer/gate_etp.py): for each kind of Service and set of
EndpointSlices, whether a node may contest, and the refusal it records otherwise."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.announcer.gate_etp import EndpointsGate
from agent.announcer.gates import GateView, Refusal, default_gates
from common.tables.endpoint_slices import ENDPOINT_SLICES, EndpointSlice
from common.tables.services import Service
from statedb import Database

LOCAL = Service("shop", "web", type="LoadBalancer", external_traffic_policy="Local")
CLUSTER = Service("shop", "web", type="LoadBalancer")


@pytest.fixture
def db() -> Iterator[Database]:
    with Database.open(None, [ENDPOINT_SLICES]) as d:
        yield d


def slices(db: Database, *rows: EndpointSlice) -> None:
    with db.write_txn(ENDPOINT_SLICES) as txn:
        for r in rows:
            txn.upsert(ENDPOINT_SLICES, r)


def check(
    db: Database, service: Service, node: str, announce_without_endpoints: bool = True
) -> Refusal | None:
    gate = EndpointsGate(announce_without_endpoints)
    with db.read_txn() as r:
        return gate.check(service, {}, GateView(node, {}, r))


def ready_on(name: str, *nodes: str, service: str = "web") -> EndpointSlice:
    return EndpointSlice("shop", name, service, nodes=nodes, endpoints=len(nodes), ready=len(nodes))


def test_local_is_contested_only_where_an_endpoint_is(db: Database) -> None:
    slices(db, ready_on("web-1", "node3"))
    assert check(db, LOCAL, "node3") is None
    refusal = check(db, LOCAL, "node1")
    assert refusal == Refusal(
        "no-local-endpoint",
        "externalTrafficPolicy is Local and node1 has no ready endpoint of shop/web "
        "(ready on node3)",
    )
    assert not refusal.cluster_wide


def test_every_slice_of_the_service_counts_and_only_its_own(db: Database) -> None:
    slices(
        db,
        ready_on("web-v4", "node2"),
        ready_on("web-v6", "node3"),
        ready_on("other-1", "node1", service="other"),
        EndpointSlice("elsewhere", "web-1", "web", nodes=("node1",), endpoints=1, ready=1),
    )
    assert check(db, LOCAL, "node2") is None
    assert check(db, LOCAL, "node3") is None
    refusal = check(db, LOCAL, "node1")
    assert refusal is not None and refusal.detail.endswith("(ready on node2, node3)")


def test_a_serving_terminating_endpoint_keeps_its_node(db: Database) -> None:
    slices(db, EndpointSlice("shop", "web-1", "web", nodes=("node3",), endpoints=1, terminating=1))
    assert check(db, LOCAL, "node3") is None


def test_many_nodes_are_named_up_to_three(db: Database) -> None:
    slices(db, ready_on("web-1", "node2", "node3", "node4", "node5", "node6"))
    refusal = check(db, LOCAL, "node1")
    assert refusal is not None
    assert refusal.detail.endswith("(ready on node2, node3, node4 and 2 more)")


def test_only_endpoints_without_node_name_refuse_everywhere_with_the_reason(db: Database) -> None:
    slices(db, EndpointSlice("shop", "gw-1", "web", endpoints=2, ready=2, without_node=2))
    for node in ("node1", "node2"):
        assert check(db, LOCAL, node) == Refusal(
            "endpoints-without-node",
            "externalTrafficPolicy is Local but none of the 2 ready endpoint(s) of shop/web has "
            "a nodeName, so no node has a local one; set nodeName on the endpoints, or use "
            "externalTrafficPolicy Cluster",
            cluster_wide=True,
        )
    # The same endpoints behind a Cluster Service: announced as usual.
    assert check(db, CLUSTER, "node1") is None


def test_some_endpoints_without_node_name_are_named_in_the_others_refusal(db: Database) -> None:
    slices(
        db,
        EndpointSlice(
            "shop", "web-1", "web", nodes=("node2",), endpoints=3, ready=3, without_node=2
        ),
    )
    assert check(db, LOCAL, "node2") is None
    refusal = check(db, LOCAL, "node1")
    assert refusal is not None and refusal.reason == "no-local-endpoint"
    assert refusal.detail.endswith(
        "(ready on node2); 2 endpoint(s) without nodeName are on no node"
    )


@pytest.mark.parametrize("service", [LOCAL, CLUSTER], ids=["local", "cluster"])
def test_no_ready_endpoint_anywhere_is_announced_by_default(db: Database, service: Service) -> None:
    slices(db, EndpointSlice("shop", "web-1", "web", endpoints=2))  # two, neither ready
    assert check(db, service, "node1") is None
    assert check(db, service, "node2") is None


@pytest.mark.parametrize("service", [LOCAL, CLUSTER], ids=["local", "cluster"])
@pytest.mark.parametrize("has_slice", [True, False], ids=["not-ready", "no-slice"])
def test_no_ready_endpoint_anywhere_refuses_everywhere_when_configured(
    db: Database, service: Service, has_slice: bool
) -> None:
    if has_slice:
        slices(db, EndpointSlice("shop", "web-1", "web", endpoints=1))
    assert check(db, service, "node1", announce_without_endpoints=False) == Refusal(
        "no-ready-endpoint",
        "no endpoint of shop/web is ready (or serving while terminating) on any node, and "
        "announce-without-endpoints is false",
        cluster_wide=True,
    )


def test_cluster_with_endpoints_is_announced_from_any_node(db: Database) -> None:
    slices(db, ready_on("web-1", "node3"))
    assert check(db, CLUSTER, "node1", announce_without_endpoints=False) is None
    assert check(db, CLUSTER, "node1") is None


def endpoints_gates(**kwargs: bool) -> list[EndpointsGate]:
    return [g for g in default_gates(**kwargs) if isinstance(g, EndpointsGate)]


def test_the_default_gates_include_it_when_the_agent_reflects_endpoint_slices() -> None:
    assert endpoints_gates() == []  # nothing fills its table: the announcer would wait forever
    (gate,) = endpoints_gates(endpoints=True)
    assert gate.announce_without_endpoints is True
    assert gate.tables == (ENDPOINT_SLICES,)
    (gate,) = endpoints_gates(endpoints=True, announce_without_endpoints=False)
    assert gate.announce_without_endpoints is False
