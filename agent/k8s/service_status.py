"""The Kubernetes calls behind ``ServiceStatusWriter`` (agent/service_status.py): a read of the
Service for its uid, and an Event on it that ``kubectl describe svc`` lists. The Service itself is
never written (the agent's RBAC has no write verb on Services)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import kubernetes

from agent.service_status import LookUp, RecordEvent

COMPONENT = "l2announcer"  # the Event's source and reporting component
REQUEST_TIMEOUT = 10.0  # seconds


def kubernetes_writers(
    api_client: Any, node: str, event_type: str = "Normal"
) -> tuple[LookUp, RecordEvent]:
    """The look-up and record-event functions of ServiceStatusWriter, as ``node``; the events are
    of ``event_type`` (``Warning`` for a VIP conflict, agent/conflicts/report.py)."""
    core = kubernetes.client.CoreV1Api(api_client)

    def look_up(namespace: str, name: str) -> str | None:
        try:
            svc = core.read_namespaced_service(name, namespace, _request_timeout=REQUEST_TIMEOUT)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return None
            raise
        meta = svc.metadata
        return str(meta.uid or "") if meta is not None else ""

    def record_event(namespace: str, name: str, uid: str, reason: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event: Any = {  # plain JSON: the client sends it as is
            "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "v1", "kind": "Service", "namespace": namespace, "name": name,
                "uid": uid,
            },
            "reason": reason,
            "message": message,
            "type": event_type,
            "source": {"component": COMPONENT, "host": node},
            "reportingComponent": COMPONENT,
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }  # fmt: skip
        core.create_namespaced_event(namespace, event, _request_timeout=REQUEST_TIMEOUT)

    return look_up, record_event
