"""The answer to "which node owns my IP?" on the Service itself (landscape pain point 13).

When this node starts announcing a Service (it acquired the Service's lease), it sets the
annotation ``l2announcer.io/announcing-node: <node>`` on the Service and records an Event
(reason ``Announcing``), so ``kubectl describe svc`` answers the question; a failover moves the
annotation and adds an event from the new holder. Writes happen on a thread of their own (a slow
API must not delay announcing) and failures are logged once each, never retried in a loop.

The writes share the agent's rate-limited client with lease renewals, so, as the policy
StatusWriter, only the latest write per Service is kept pending and stop() drops what is pending
rather than draining it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

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
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, str], str] = {}  # (namespace, name) -> detail
        self._stop = False
        self._thread: threading.Thread | None = None
        self.written = 0

    def announced(self, namespace: str, name: str, detail: str = "") -> None:
        with self._cond:
            self._pending[(namespace, name)] = detail
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="service-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._pending.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or bool(self._pending))
                if self._stop:
                    return
                key = next(iter(self._pending))  # oldest first
                detail = self._pending.pop(key)
            namespace, name = key
            try:
                uid = self._annotate(namespace, name, self.node)
                message = f"announcing from node {self.node}" + (f" ({detail})" if detail else "")
                self._record_event(namespace, name, uid, REASON, message)
                self.written += 1
            except Exception as e:
                log.warning("recording the announcing node on service %s/%s failed: %s",
                            namespace, name, e)  # fmt: skip


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
