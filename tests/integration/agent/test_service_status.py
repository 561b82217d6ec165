"""Which node announces a Service, as an operator sees it on the real apiserver: an ``Announcing``
event from each new holder on the Service (``kubectl describe svc``) and the holder of its Lease
(``kubectl get lease``), written with the agent's shipped RBAC, which can write only a Service's
status conditions (services/status): its spec and metadata are never changed."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from agent.k8s.service_status import kubernetes_writers
from agent.service_status import ServiceStatusWriter
from tests.integration.agent.cluster import Cluster, until
from tests.kube import Kube


def announcing(core: Any, ns: str, service: str) -> list[Any]:
    events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={service}").items
    return sorted(
        (e for e in events if e.reason == "Announcing"), key=lambda e: e.metadata.creation_timestamp
    )


READS = {"get", "list", "watch"}


def ours(annotations: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (annotations or {}).items() if "l2announcer" in k}


def test_events_follow_the_holder_and_the_service_is_never_written(
    kube: Kube, make_api: Callable[[str], Any]
) -> None:
    ns, core = kube.namespace, kube.core
    created: Any = core.create_namespaced_service(
        ns,
        {"metadata": {"name": "service-red"}, "spec": {"type": "LoadBalancer",
                                                     "ports": [{"port": 80}]}},  # type: ignore[arg-type]
    )  # fmt: skip
    writers = {n: ServiceStatusWriter(n, *kubernetes_writers(make_api(n), n)) for n in ("n1", "n2")}
    lease = f"{ns}/cilium-l2announce-{ns}-service-red"
    for w in writers.values():
        w.start()
    try:
        # A failover: n1 announces, later n2 takes over; then n1 again, after n2 held it.
        writers["n1"].announced(ns, "service-red", [("198.51.100.1", "eth0")], lease)
        until(lambda: writers["n1"].written == 1, 10, "n1's event")
        writers["n2"].announced(ns, "service-red", [("198.51.100.1", "eth1")], lease)
        until(lambda: writers["n2"].written == 1, 10, "n2's event")
        writers["n2"].announced(ns, "service-red", [("198.51.100.1", "eth1")], lease)
        assert writers["n2"].skipped == 1  # the same holder again: no second event
        # A Service deleted before its event goes out gets none (nothing would show it).
        writers["n1"].announced(ns, "service-gone", [("198.51.100.2", "eth0")], lease)
        until(lambda: writers["n1"].gone == 1, 10, "the missing Service seen")
    finally:
        for w in writers.values():
            w.stop()
    events = announcing(core, ns, "service-red")
    assert [(e.message, e.source.host, e.type) for e in events] == [
        (f"announcing 198.51.100.1 on eth0 from node n1 (lease {lease})", "n1", "Normal"),
        (f"announcing 198.51.100.1 on eth1 from node n2 (lease {lease})", "n2", "Normal"),
    ]
    svc: Any = core.read_namespaced_service("service-red", ns)
    assert {e.involved_object.uid for e in events} == {svc.metadata.uid}
    assert svc.metadata.resource_version == created.metadata.resource_version
    assert ours(svc.metadata.annotations) == {}
    assert announcing(core, ns, "service-gone") == []
    out = kube.kubectl("-n", ns, "describe", "svc", "service-red", check=True).stdout
    assert "Announcing  " in out
    assert "announcing 198.51.100.1 on eth1 from node n2" in out
    assert "l2announcer.io/" not in out


def test_an_operator_finds_the_holder_with_kubectl_after_a_failover(cluster: Cluster) -> None:
    """The two commands docs/deploy.md gives, before and after the holder's agent stops."""
    ns, kube = cluster.namespace, cluster.kube
    ((lease, ip),) = cluster.services(1).items()
    before: Any = cluster.core.read_namespaced_service("service-1", ns)
    cluster.start_agent("node1")
    until(lambda: cluster.announced("node1") == {ip}, 30, "node1 announces")
    until(lambda: len(announcing(cluster.core, ns, "service-1")) == 1, 10, "node1's event")
    cluster.start_agent("node2")
    until(lambda: cluster.holder(lease) == "node1", 10, "node1 holds the lease")

    def holder_column() -> str:
        out = kube.kubectl("-n", ns, "get", "lease", lease, check=True).stdout
        header, row = out.splitlines()
        assert header.split() == ["NAME", "HOLDER", "AGE"]
        return str(row.split()[1])

    assert holder_column() == cluster.real("node1")

    cluster.signal("node1", signal.SIGTERM)  # a planned handover: node1 releases its lease
    until(lambda: cluster.holder(lease) == "node2", 30, "node2 takes the lease")
    until(lambda: len(announcing(cluster.core, ns, "service-1")) == 2, 30, "node2's event")
    assert holder_column() == cluster.real("node2")
    described = kube.kubectl("-n", ns, "describe", "svc", "service-1", check=True).stdout
    where = f"(lease {ns}/{lease})"
    for node in ("node1", "node2"):
        assert f"announcing {ip} on lo from node {cluster.real(node)} {where}" in described
    # Of the Service, the agents wrote only its Announced condition (the status subresource):
    # node2's replaced node1's. Spec and metadata are untouched.
    until(lambda: announced_message(cluster, ns) == f"announced from node {cluster.real('node2')}",
          30, "node2's condition")  # fmt: skip
    after: Any = cluster.core.read_namespaced_service("service-1", ns)
    assert after.spec.to_dict() == before.spec.to_dict()
    assert after.metadata.generation == before.metadata.generation
    assert ours(after.metadata.annotations) == {}
    writes = [e for e in cluster.agent_requests(resource="services") if e.verb not in READS]
    assert writes and {(e.verb, e.subresource) for e in writes} == {("patch", "status")}
    assert cluster.forbidden() == []


def announced_message(cluster: Cluster, ns: str) -> str:
    svc: Any = cluster.core.read_namespaced_service("service-1", ns)
    conds = [c for c in (svc.status.conditions or []) if c.type == "l2announcer.io/Announced"]
    return str(conds[0].message) if conds and conds[0].status == "True" else ""
