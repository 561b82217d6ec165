"""The Kubernetes writes behind ``ServiceStatusWriter`` (agent/service_status.py): the
``l2announcer.io/announcing-node`` annotation on the Service (a JSON merge patch, so other
annotations stay), and an Event on it that ``kubectl describe svc`` lists."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import kubernetes

from agent.service_status import Annotate, RecordEvent

ANNOTATION = "l2announcer.io/announcing-node"
COMPONENT = "l2announcer"  # the Event's source and reporting component
REQUEST_TIMEOUT = 10.0  # seconds


def kubernetes_writers(api_client: Any, node: str) -> tuple[Annotate, RecordEvent]:
    """The annotate and record-event functions of ServiceStatusWriter, as ``node``."""
    core = kubernetes.client.CoreV1Api(api_client)

    def annotate(namespace: str, name: str, holder: str) -> str:
        body = {"metadata": {"annotations": {ANNOTATION: holder}}}
        svc = core.patch_namespaced_service(
            name, namespace, body, _content_type="application/merge-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
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
            "type": "Normal",
            "source": {"component": COMPONENT, "host": node},
            "reportingComponent": COMPONENT,
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }  # fmt: skip
        core.create_namespaced_event(namespace, event, _request_timeout=REQUEST_TIMEOUT)

    return annotate, record_event
