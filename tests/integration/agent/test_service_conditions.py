"""The Service conditions on the real apiserver, written with the agent's shipped RBAC: merged by
type (another controller's condition stays), not written again when the Service already says the
same, lastTransitionTime kept while the status does not change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.k8s.service_conditions import kubernetes_condition_writer
from agent.service_conditions import ANNOUNCED, CONFLICT, Condition
from tests.kube import Kube

OTHERS = {"type": "example.com/Ready", "status": "True", "reason": "Fine", "message": "x",
          "lastTransitionTime": "2026-01-01T00:00:00Z"}  # fmt: skip


def conditions(core: Any, ns: str) -> dict[str, Any]:
    svc = core.read_namespaced_service("web", ns)
    return {c.type: c for c in svc.status.conditions or []}


def test_conditions_merge_by_type_and_repeat_writes_are_skipped(
    kube: Kube, make_api: Callable[[str], Any]
) -> None:
    ns, core = kube.namespace, kube.core
    core.create_namespaced_service(
        ns,
        {"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},  # type: ignore[arg-type]
    )
    core.patch_namespaced_service_status(
        "web", ns, {"status": {"conditions": [OTHERS]}},
        _content_type="application/strategic-merge-patch+json",
    )  # fmt: skip
    write = kubernetes_condition_writer(make_api("agent"))

    write(ns, "web", Condition(ANNOUNCED, True, "Announcing", "announced from node n1"))
    write(ns, "web", Condition(CONFLICT, False, "NoConflict", "no other MAC answers"))
    got = conditions(core, ns)
    assert set(got) == {"example.com/Ready", ANNOUNCED, CONFLICT}
    assert (got[ANNOUNCED].status, got[ANNOUNCED].reason) == ("True", "Announcing")
    first = got[ANNOUNCED].last_transition_time

    rv = core.read_namespaced_service("web", ns).metadata.resource_version
    write(ns, "web", Condition(ANNOUNCED, True, "Announcing", "announced from node n1"))
    assert core.read_namespaced_service("web", ns).metadata.resource_version == rv  # skipped

    # Same status, new message (a failover): the transition time stays.
    write(ns, "web", Condition(ANNOUNCED, True, "Announcing", "announced from node n2"))
    got = conditions(core, ns)
    assert got[ANNOUNCED].message == "announced from node n2"
    assert got[ANNOUNCED].last_transition_time == first
    # A Service deleted meanwhile is no error.
    write(ns, "gone", Condition(ANNOUNCED, False, "NoReadyEndpoint", "no endpoint"))
