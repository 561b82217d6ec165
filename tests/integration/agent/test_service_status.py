"""The announcing node on the Service: annotation and event, written with the agent's shipped RBAC
and visible to kubectl describe."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.k8s.service_status import ANNOTATION, kubernetes_writers
from agent.service_status import ServiceStatusWriter
from tests.kube import Kube


def test_annotation_and_event_follow_the_holder(kube: Kube, make_api: Callable[[str], Any]) -> None:
    ns, core = kube.namespace, kube.core
    core.create_namespaced_service(
        ns,
        {"metadata": {"name": "service-red"}, "spec": {"type": "LoadBalancer",
                                                     "ports": [{"port": 80}]}},  # type: ignore[arg-type]
    )  # fmt: skip
    writers = {n: ServiceStatusWriter(n, *kubernetes_writers(make_api(n), n)) for n in ("n1", "n2")}
    for w in writers.values():
        w.start()
    try:
        deadline = time.monotonic() + 10
        # A failover: n1 announces, later n2 takes over.
        writers["n1"].announced(ns, "service-red", "lease taken")
        while writers["n1"].written < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        writers["n2"].announced(ns, "service-red", "took over in 0.12s")
        while writers["n2"].written < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        for w in writers.values():
            w.stop()
    svc: Any = core.read_namespaced_service("service-red", ns)
    assert svc.metadata.annotations[ANNOTATION] == "n2"
    events = core.list_namespaced_event(ns, field_selector="involvedObject.name=service-red").items
    assert [(e.reason, e.message) for e in events] == [
        ("Announcing", "announcing from node n1 (lease taken)"),
        ("Announcing", "announcing from node n2 (took over in 0.12s)"),
    ]
    assert {e.involved_object.uid for e in events} == {svc.metadata.uid}
    out = kube.kubectl("-n", ns, "describe", "svc", "service-red", check=True).stdout
    assert "l2announcer.io/announcing-node: n2" in out
    assert "announcing from node n2" in out
