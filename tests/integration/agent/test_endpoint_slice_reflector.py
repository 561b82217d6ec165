"""The EndpointSlices reflector on the real kube-apiserver, with the agent's shipped RBAC: the
table is initialized by the first list, follows updates and deletions, and leaves out the slices
the gates never ask about (headless Services', other proxies', those of no Service)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.k8s.objects import ENDPOINT_SLICE_MAPPING, sources
from agent.k8s.reflector import Reflector
from common.tables.endpoint_slices import ENDPOINT_SLICES, EndpointSlice
from statedb import Database
from tests.kube import Kube, until


def body(name: str, labels: dict[str, str], *nodes: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"endpointslice.kubernetes.io/managed-by": "test.l2announcer.io", **labels},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [f"10.0.0.{i + 1}"], "nodeName": n, "conditions": {"ready": True}}
            for i, n in enumerate(nodes)
        ],
    }


def test_the_reflector_fills_the_table_with_the_slices_gates_ask_about(
    kube: Kube, make_api: Callable[[str], Any]
) -> None:
    ns = kube.namespace
    d = kube.discovery
    service = {"kubernetes.io/service-name": "web"}
    for name, labels, nodes in [
        ("web-1", service, ["node1"]),
        ("orphan", {}, ["node1"]),  # of no Service
        ("db-1", {"kubernetes.io/service-name": "db", "service.kubernetes.io/headless": ""}, []),
        ("other-1", {"kubernetes.io/service-name": "other",
                     "service.kubernetes.io/service-proxy-name": "another-proxy"}, []),
    ]:  # fmt: skip
        obj = body(name, labels, *nodes)
        d.create_namespaced_endpoint_slice(ns, obj)  # type: ignore[arg-type]

    api = make_api("agent")
    with Database.open(None, [ENDPOINT_SLICES]) as db:
        reflector: Reflector[EndpointSlice] = Reflector(
            db, sources(api, "node1", ns)["endpointslices"], ENDPOINT_SLICE_MAPPING
        )

        def ours() -> dict[str, EndpointSlice]:
            with db.read_txn() as r:
                return {s.name: s for s in r.all(ENDPOINT_SLICES) if s.namespace == ns}

        def initialized() -> bool:
            with db.read_txn() as r:
                return r.initialized(ENDPOINT_SLICES)

        assert not initialized()
        reflector.start()
        try:
            until(initialized, 10, "initialized by the first list")
            assert ours() == {
                "web-1": EndpointSlice(ns, "web-1", "web", "IPv4", ("node1",), 1, 1),
            }
            moved = {"endpoints": body("web-1", service, "node2", "node3")["endpoints"]}
            d.patch_namespaced_endpoint_slice("web-1", ns, moved)
            until(lambda: ours()["web-1"].nodes == ("node2", "node3"), 10, "the update")
            d.delete_namespaced_endpoint_slice("web-1", ns)
            until(lambda: ours() == {}, 10, "the deletion")
        finally:
            reflector.stop()
