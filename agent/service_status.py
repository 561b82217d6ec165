"""The answer to "which node owns my IP?" on the Service itself (landscape pain point 13).

When this node starts announcing a Service (it acquired the Service's lease), it sets the
annotation ``l2announcer.io/announcing-node: <node>`` on the Service and records an Event
(reason ``Announcing``), so ``kubectl describe svc`` answers the question; a failover moves the
annotation and adds an event from the new holder. Writes happen on a thread of their own (a slow
API must not delay announcing) and failures are logged once each, never retried in a loop.

The writes share the agent's rate-limited client with lease renewals: only the latest write per
Service is kept pending, and stopping drops what is pending (agent/latest_writer.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.latest_writer import LatestWriter

log = logging.getLogger("l2announcer.service-status")

ANNOTATION = "l2announcer.io/announcing-node"
REASON = "Announcing"
COMPONENT = "l2announcer"

# (namespace, name, node) -> the patched Service's uid
Annotate = Callable[[str, str, str], str]
# (namespace, name, uid, reason, message)
RecordEvent = Callable[[str, str, str, str, str], None]


class ServiceStatusWriter:
    def __init__(self, node: str, annotate: Annotate, record_event: RecordEvent) -> None:
        self.node = node
        self._annotate = annotate
        self._record_event = record_event
        # (namespace, name) -> detail
        self._writer: LatestWriter[tuple[str, str], str] = LatestWriter(
            "service-status", self._write, self._failed
        )
        self.written = 0

    def announced(self, namespace: str, name: str, detail: str = "") -> None:
        self._writer.submit((namespace, name), detail)

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self._writer.stop()

    def _write(self, key: tuple[str, str], detail: str) -> None:
        namespace, name = key
        uid = self._annotate(namespace, name, self.node)
        message = f"announcing from node {self.node}" + (f" ({detail})" if detail else "")
        self._record_event(namespace, name, uid, REASON, message)
        self.written += 1

    def _failed(self, key: tuple[str, str], e: Exception) -> None:
        log.warning("recording the announcing node on service %s/%s failed: %s", *key, e)


def kubernetes_writers(api_client: Any, node: str) -> tuple[Annotate, RecordEvent]:
    import kubernetes

    core = kubernetes.client.CoreV1Api(api_client)

    def annotate(namespace: str, name: str, holder: str) -> str:
        body = {"metadata": {"annotations": {ANNOTATION: holder}}}
        svc = core.patch_namespaced_service(
            name, namespace, body, _content_type="application/merge-patch+json",
            _request_timeout=10,
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
        core.create_namespaced_event(namespace, event, _request_timeout=10)

    return annotate, record_event
