"""The answer to "which node owns my IP?" on the Service itself, without writing to the Service.

When this node starts announcing a Service (it holds the Service's lease and at least one of its
(IP, interface) pairs is programmed, agent/announcer/announced.py), it records an Event on the
Service (reason ``Announcing``, message ``announcing <ip> on <interface> from node <node> (lease
<namespace>/<lease>)``), so ``kubectl describe svc`` answers the question; a failover adds an event
from the new holder. The Lease names the holder at every moment (``kubectl get lease``, its HOLDER
column); the event says when it began answering and for which IPs where.

Nothing is written into the Service: the agent cannot patch Services at all, and no field of the
Service can go on naming a node that stopped announcing (a node that crashes writes nothing on
its way out). Events age out (the API server's event TTL, one hour by default); the Lease stays.

A node that announces the Service again without another node having held its lease since (a lease
lost and re-taken, a pair re-programmed) records nothing: its event is already the latest, and a
flapping lease must not add an event per flap. Events go out in a job of their own (a slow API must
not delay announcing); failures are logged once each, never retried in a loop, and show in the
``service-status`` health row.

The Kubernetes calls are agent/k8s/service_status.py's. They share the agent's rate-limited
client with lease renewals: only the latest event per Service is kept pending, and stopping drops
what is pending (agent/latest_writer.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from agent.latest_writer import LatestWriter

log = logging.getLogger("l2announcer.service-status")

REASON = "Announcing"

# (namespace, name) -> the Service's uid (an Event names its object by uid too, and kubectl
# describe lists only the events of this very object), or None when the Service is gone.
LookUp = Callable[[str, str], str | None]
# (namespace, name, uid, reason, message)
RecordEvent = Callable[[str, str, str, str, str], None]


def message(node: str, pairs: Sequence[tuple[str, str]], lease: str = "") -> str:
    """``announcing 198.51.100.1 on eth0 from node node1 (lease kube-system/cilium-...)``."""
    where = ", ".join(f"{ip} on {iface}" for ip, iface in pairs)
    text = f"announcing {where} from node {node}" if where else f"announcing from node {node}"
    return f"{text} (lease {lease})" if lease else text


class ServiceStatusWriter:
    def __init__(self, node: str, look_up: LookUp, record_event: RecordEvent) -> None:
        self.node = node
        self._look_up = look_up
        self._record_event = record_event
        # (namespace, name) -> the event's message
        self._writer: LatestWriter[tuple[str, str], str] = LatestWriter(
            "service-status", self._write, self._failed
        )
        self.name = self._writer.name
        self.health = self._writer.health
        self._lock = threading.Lock()
        # Services whose latest Announcing event is this node's (recorded, or being recorded) and
        # whose lease no other node has been seen holding since.
        self._ours: set[tuple[str, str]] = set()
        self.written = 0
        self.skipped = 0
        self.gone = 0  # Services deleted before their event went out

    def announced(
        self, namespace: str, name: str, pairs: Sequence[tuple[str, str]] = (), lease: str = ""
    ) -> None:
        """This node answers for ``pairs`` ((IP, interface)) of the Service, under ``lease``
        (``<namespace>/<name>``)."""
        key = (namespace, name)
        with self._lock:
            if key in self._ours:
                self.skipped += 1
                return
            self._ours.add(key)
        self._writer.submit(key, message(self.node, pairs, lease))

    def other_holder(self, namespace: str, name: str, holder: str = "") -> None:
        """Another node holds the Service's lease: the next announcement from here is news."""
        with self._lock:
            self._ours.discard((namespace, name))

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self._writer.stop()

    def _write(self, key: tuple[str, str], text: str) -> None:
        namespace, name = key
        uid = self._look_up(namespace, name)
        if uid is None:  # deleted meanwhile: an event would name an object that is not there
            self.gone += 1
            return
        self._record_event(namespace, name, uid, REASON, text)
        self.written += 1

    def _failed(self, key: tuple[str, str], e: Exception) -> None:
        with self._lock:
            self._ours.discard(key)  # so the next announcement tries again
        log.warning("recording the announcing node on service %s/%s failed: %s", *key, e)
