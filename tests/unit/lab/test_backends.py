"""The lab's EndpointSlices (lab/backends.py): what `l2lab backend` writes for a Service."""

from __future__ import annotations

from agent.k8s.objects import endpoint_slice_row
from common.tables.endpoint_slices import EndpointSlice
from lab.backends import MANAGED_BY, endpoint_slice


def test_a_slice_ties_to_its_service_and_is_not_kube_controller_managers() -> None:
    obj = endpoint_slice("service-1", ["node3"])
    labels = obj["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "service-1"
    assert labels["endpointslice.kubernetes.io/managed-by"] == MANAGED_BY
    assert not MANAGED_BY.endswith(".k8s.io")  # the controllers' own values end so
    (endpoint,) = obj["endpoints"]
    assert endpoint["addresses"] == ["198.51.100.13"]  # the node's own address


def test_the_agent_reads_each_condition_as_intended() -> None:
    """What the agent's table makes of each slice the lab can write."""
    rows = {
        c: endpoint_slice_row(endpoint_slice("service-1", ["node1", "node2"], condition=c))
        for c in ("ready", "not-ready", "terminating")
    }
    name = "service-1-l2lab"
    assert rows == {
        "ready": EndpointSlice("default", name, "service-1", "IPv4", ("node1", "node2"), 2, 2),
        "not-ready": EndpointSlice("default", name, "service-1", "IPv4", (), 2),
        "terminating": EndpointSlice(
            "default", name, "service-1", "IPv4", ("node1", "node2"), 2, terminating=2
        ),
    }
    unnamed = endpoint_slice_row(endpoint_slice("service-1", ["node1"], node_name=False))
    assert unnamed is not None and (unnamed.nodes, unnamed.without_node) == ((), 1)
    empty = endpoint_slice_row(endpoint_slice("service-1", []))
    assert empty == EndpointSlice("default", name, "service-1", "IPv4")
