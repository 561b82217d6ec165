"""What a conflict tells the Service: a Warning Event and the ``l2announcer.io/Conflict``
condition, so ``kubectl describe svc`` shows the foreign MAC without tcpdump.

- A conflict raised: a Warning Event (reason ``VIPConflict``, message ``198.51.100.20 on eth0 is
  also answered by 02:..:99 (this node answers from 02:..:11); node node1 holds the lease``) on
  every Service wanting the VIP, and the condition True with the same words.
- A conflict over: a Normal Event (``VIPConflictResolved``) and, once none of the Service's VIPs
  has one, the condition False.
- A Service announced for the claim grace plus the quiet time with no conflict gets the
  condition False (``NoConflict``) when the ``services`` table shows it True: a condition left
  True by a holder that crashed mid-conflict is corrected by the next holder's first look, and a
  claim costs no API request otherwise (many Services taken over at once must not queue status
  writes in front of lease renewals in the shared rate limiter).

The Service's uid, which an Event names it by, comes from the ``services`` table too; the API is
asked only when the table does not have it.

Conditions go through the agent's one writer of Service conditions (``set_condition``,
agent/service_conditions.py; absent in processes without it: then only the Events), Events
through the agent's event calls in a writer of their own. Both run off the detector's thread
(agent/latest_writer.py): only the latest value per key is sent, and stopping drops what is
pending.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.conflicts.monitor import Reports, describe
from agent.conflicts.rules import Pair
from agent.latest_writer import LatestWriter
from agent.service_status import LookUp, RecordEvent
from common.tables.conflicts import Conflict
from common.tables.services import SERVICES, Service
from statedb import Database

log = logging.getLogger("l2announcer.conflicts")

CONDITION = "l2announcer.io/Conflict"
REASON_CONFLICT = "VIPConflict"
REASON_RESOLVED = "VIPConflictResolved"
REASON_NONE = "NoConflict"

# (namespace, name, condition type, status, reason, message)
SetCondition = Callable[[str, str, str, bool, str, str], None]
# (namespace, name) -> the Service's row in the services table, if any
ServiceRow = Callable[[str, str], Service | None]


def services_table(db: Database) -> ServiceRow:
    def row(namespace: str, name: str) -> Service | None:
        with db.read_txn() as r:
            return r.get(SERVICES, namespace, name)

    return row


@dataclass(frozen=True, slots=True)
class _Event:
    warning: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class _Condition:
    status: bool
    reason: str
    message: str


Key = tuple[str, str, str]  # (what, namespace, name); what: "condition" or an event's own key


class ConflictReports(Reports):
    name = "conflict-reports"

    def __init__(
        self,
        node: str,
        look_up: LookUp,
        record_warning: RecordEvent,
        record_normal: RecordEvent,
        set_condition: SetCondition | None = None,
        service_row: ServiceRow | None = None,
    ) -> None:
        self.node = node
        self._service_row = service_row
        self._look_up = look_up
        self._record_warning = record_warning
        self._record_normal = record_normal
        self._set_condition = set_condition
        self._lock = threading.Lock()
        # Service "namespace/name" -> its VIPs' conflicts, by (ip, interface, foreign MAC).
        self._open: dict[str, dict[tuple[str, str, str], Conflict]] = {}
        self._writer: LatestWriter[Key, _Event | _Condition] = LatestWriter(
            self.name, self._write, self._failed
        )
        self.health = self._writer.health
        self.events = 0
        self.conditions = 0

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self._writer.stop()

    # -- from the detector ---------------------------------------------------------------------

    def raised(self, row: Conflict) -> None:
        text = f"{describe(row)}; node {self.node} holds the lease"
        key = (row.ip, row.network_interface, row.foreign_mac)
        for service in row.services:
            ns, _, name = service.partition("/")
            with self._lock:
                self._open.setdefault(service, {})[key] = row
                summary = self._summary(service)
            self._submit(
                ("event", ns, name + "/" + "/".join(key)), _Event(True, REASON_CONFLICT, text)
            )
            self._submit(("condition", ns, name), _Condition(True, REASON_CONFLICT, summary))

    def cleared(self, row: Conflict, why: str) -> None:
        key = (row.ip, row.network_interface, row.foreign_mac)
        text = f"{row.ip} on {row.network_interface}: {row.foreign_mac} {why} (node {self.node})"
        for service in row.services:
            ns, _, name = service.partition("/")
            with self._lock:
                left = self._open.get(service, {})
                left.pop(key, None)
                summary = self._summary(service) if left else ""
                if not left:
                    self._open.pop(service, None)
            self._submit(
                ("event", ns, name + "/" + "/".join(key)), _Event(False, REASON_RESOLVED, text)
            )
            if summary:
                self._submit(("condition", ns, name), _Condition(True, REASON_CONFLICT, summary))
            else:
                self._submit(("condition", ns, name), _Condition(False, REASON_NONE, text))

    def clean(self, pair: Pair) -> None:
        text = f"no other host answers for {pair.ip} on {pair.interface} (node {self.node})"
        for service in pair.services:
            ns, _, name = service.partition("/")
            with self._lock:
                if service in self._open:
                    continue
            if self._service_row is not None:
                row = self._service_row(ns, name)
                if row is None or row.conflict_condition != "True":
                    continue  # nothing to correct
            self._submit(("condition", ns, name), _Condition(False, REASON_NONE, text))

    # -- writing -------------------------------------------------------------------------------

    def _summary(self, service: str) -> str:
        rows = sorted(self._open[service].values(), key=lambda c: (c.ip, c.foreign_mac))
        text = "; ".join(describe(r) for r in rows)
        return f"{text}; node {self.node} holds the lease"

    def _submit(self, key: Key, value: _Event | _Condition) -> None:
        if isinstance(value, _Event):
            self._writer.submit(key, value)
        elif self._set_condition is not None:  # its own writer: off this thread, latest only
            _, namespace, name = key
            self._set_condition(
                namespace, name, CONDITION, value.status, value.reason, value.message
            )
            self.conditions += 1

    def _write(self, key: Key, value: _Event | _Condition) -> None:
        _, namespace, name = key
        assert isinstance(value, _Event)
        service = name.split("/", 1)[0]
        row = self._service_row(namespace, service) if self._service_row is not None else None
        uid = row.uid if row is not None and row.uid else self._look_up(namespace, service)
        if uid is None:  # the Service is gone
            return
        record = self._record_warning if value.warning else self._record_normal
        record(namespace, service, uid, value.reason, value.message)
        self.events += 1

    def _failed(self, key: Key, e: Exception) -> None:
        what, namespace, name = key
        log.warning(
            "reporting a VIP conflict (%s) on service %s/%s failed: %s",
            what,
            namespace,
            name.split("/", 1)[0],
            e,
        )
