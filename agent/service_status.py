"""The answer to "which node owns my IP?" on the Service itself.

When this node starts announcing a Service (it holds the Service's lease and at least one of its
(IP, interface) pairs is programmed, agent/announcer/announced.py), it sets the annotation
``l2announcer.io/announcing-node: <node>`` on the Service and records an Event (reason
``Announcing``), so ``kubectl describe svc`` answers the question; a failover moves the
annotation and adds an event from the new holder. A node that announces the Service again without
another node having held its lease since (a lease lost and re-taken, a pair re-programmed) writes
nothing: the annotation already names it, and a flapping lease must not add an event per flap.
Writes happen in a job of their own (a slow API must not delay announcing); failures are logged
once each, never retried in a loop, and show in the ``service-status`` health row.

The Kubernetes calls are agent/k8s/service_status.py's. They share the agent's rate-limited
client with lease renewals: only the latest write per Service is kept pending, and stopping drops
what is pending (agent/latest_writer.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.latest_writer import LatestWriter

log = logging.getLogger("l2announcer.service-status")

REASON = "Announcing"

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
        self.name = self._writer.name
        self.health = self._writer.health
        self._lock = threading.Lock()
        # Services whose annotation names this node (written, or being written) and whose lease
        # no other node has been seen holding since.
        self._ours: set[tuple[str, str]] = set()
        self.written = 0
        self.skipped = 0

    def announced(self, namespace: str, name: str, detail: str = "") -> None:
        key = (namespace, name)
        with self._lock:
            if key in self._ours:
                self.skipped += 1
                return
            self._ours.add(key)
        self._writer.submit(key, detail)

    def other_holder(self, namespace: str, name: str, holder: str = "") -> None:
        """Another node holds the Service's lease: the next announcement from here is news."""
        with self._lock:
            self._ours.discard((namespace, name))

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
        with self._lock:
            self._ours.discard(key)  # so the next announcement tries again
        log.warning("recording the announcing node on service %s/%s failed: %s", *key, e)
