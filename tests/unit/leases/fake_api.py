"""An in-memory LeaseAPI for driver tests: resourceVersion preconditions, a fake watch (every
write is passed to the registered observers), and a switch that makes calls hang or raise."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from agent.leases.api import Conflict, Forbidden, LeaseAPIError, NotFound, SendTime
from agent.leases.record import LeaseRecord

Observer = Callable[[str, LeaseRecord | None], None]


class FakeLeaseAPI:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.leases: dict[str, LeaseRecord] = {}
        self.rv = 0
        self.observers: list[Observer] = []
        self.hang_for: set[str] = set()  # identities whose calls hang until timeout
        self.forbid: bool = False
        self.explode: bool = False
        self.calls: list[tuple[str, str, str]] = []  # (verb, name, holder sent)

    def client(self, identity: str) -> FakeClient:
        """The API as one node sees it, so a fault can target that node."""
        return FakeClient(self, identity)

    def _enter(
        self, who: str, verb: str, name: str, record: LeaseRecord | None, timeout: float
    ) -> None:
        holder = record.holder if record else ""
        self.calls.append((verb, name, holder))
        if who in self.hang_for:
            threading.Event().wait(timeout)
            raise LeaseAPIError("context deadline exceeded")
        if self.explode:
            raise ConnectionResetError("connection reset by peer")
        if self.forbid:
            raise Forbidden(
                f'leases.coordination.k8s.io "{name}" is forbidden: User "x" cannot {verb}'
            )

    def _publish(self, name: str, rec: LeaseRecord | None) -> None:
        for observe in list(self.observers):
            observe(name, rec)

    def get(self, who: str, name: str, timeout: float) -> LeaseRecord | None:
        self._enter(who, "get", name, None, timeout)
        with self._lock:
            return self.leases.get(name)

    def create(self, who: str, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord:
        self._enter(who, "create", name, record, timeout)
        with self._lock:
            if name in self.leases:
                raise Conflict(f'leases.coordination.k8s.io "{name}" already exists')
            self.rv += 1
            rec = self.leases[name] = dataclasses.replace(record, resource_version=str(self.rv))
        self._publish(name, rec)
        return rec

    def update(self, who: str, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord:
        self._enter(who, "update", name, record, timeout)
        with self._lock:
            cur = self.leases.get(name)
            if cur is None:
                raise NotFound(f'leases.coordination.k8s.io "{name}" not found')
            if cur.resource_version != record.resource_version:
                raise Conflict("the object has been modified; please apply your changes")
            self.rv += 1
            rec = self.leases[name] = dataclasses.replace(record, resource_version=str(self.rv))
        self._publish(name, rec)
        return rec


class FakeClient:
    """A LeaseAPI bound to one identity. It cannot tell when a request left (no rate limiter),
    so ``sent`` stays unset, and the elector counts from when it issued the request."""

    def __init__(self, api: FakeLeaseAPI, identity: str) -> None:
        self.api = api
        self.identity = identity

    def get(self, name: str, timeout: float, *, sent: SendTime | None = None) -> LeaseRecord | None:
        return self.api.get(self.identity, name, timeout)

    def create(
        self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
    ) -> LeaseRecord:
        return self.api.create(self.identity, name, record, timeout)

    def update(
        self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
    ) -> LeaseRecord:
        return self.api.update(self.identity, name, record, timeout)
