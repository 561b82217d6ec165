"""A bounded in-memory log of every request the test server answered, queryable by tests.

Safety assertions in the lab are about what clients did, not what they logged: "node2 sent no
PUT to lease X after it was partitioned", "exactly one holder renewed in the last 5 s". The
server records one :class:`~lab.kubeapi.pipeline.RequestRecord` per request (including dropped
and stalled ones, with status 0); tests filter them with :meth:`MemoryRequestLog.query` or wait
for them with :meth:`MemoryRequestLog.wait_for`.

The log keeps the newest `capacity` records (a ring), so a long lab run cannot grow without
bound; :attr:`MemoryRequestLog.dropped` says how many were evicted. Times are
``time.monotonic()`` values, the same clock the server stamps records with; ``since=5.0`` means
"in the last five seconds" on that clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.kubeapi.pipeline import RequestRecord

DEFAULT_CAPACITY = 100_000


@dataclass(frozen=True, slots=True)
class Query:
    """Filters; None matches anything. `verb` and `status` also take several values."""

    verb: str | tuple[str, ...] | None = None
    resource: str | None = None  # "leases", or "services/status" for a subresource
    api_group: str | None = None
    namespace: str | None = None
    name: str | None = None
    user: str | None = None
    status: int | tuple[int, ...] | None = None
    fault: str | None = None  # a FaultKind, or "" for requests no fault touched
    since: float | None = None  # seconds before now
    after: float | None = None  # absolute monotonic time (e.g. from MemoryRequestLog.mark())
    until: float | None = None  # absolute monotonic time, exclusive

    def matches(self, record: RequestRecord, now: float) -> bool:
        info = record.info
        if self.verb is not None and info.verb not in _several(self.verb):
            return False
        if self.resource is not None:
            resource, _, sub = self.resource.partition("/")
            if info.resource != resource or (sub and info.subresource != sub):
                return False
        if self.api_group is not None and info.api_group != self.api_group:
            return False
        if self.namespace is not None and info.namespace != self.namespace:
            return False
        if self.name is not None and info.name != self.name:
            return False
        if self.user is not None and record.user != self.user:
            return False
        if self.status is not None and record.status not in _several(self.status):
            return False
        if self.fault is not None and record.fault != self.fault:
            return False
        if self.since is not None and record.time < now - self.since:
            return False
        if self.after is not None and record.time < self.after:
            return False
        return self.until is None or record.time < self.until


def _several(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def record_to_json(record: RequestRecord) -> dict[str, Any]:
    info = record.info
    return {
        "time": record.time,
        "user": record.user,
        "method": info.method,
        "path": info.path,
        "verb": info.verb,
        "api_group": info.api_group,
        "api_version": info.api_version,
        "resource": info.resource,
        "subresource": info.subresource,
        "namespace": info.namespace,
        "name": info.name,
        "status": record.status,
        "duration": record.duration,
        "fault": record.fault,
    }


class MemoryRequestLog:
    """pipeline.RequestLog kept in memory. Thread-safe."""

    def __init__(
        self, capacity: int = DEFAULT_CAPACITY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._records: deque[RequestRecord] = deque(maxlen=capacity)
        self._changed = threading.Condition()
        self._clock = clock
        self.recorded = 0  # ever recorded, including evicted ones

    @property
    def capacity(self) -> int:
        maxlen = self._records.maxlen
        assert maxlen is not None
        return maxlen

    @property
    def dropped(self) -> int:
        with self._changed:
            return self.recorded - len(self._records)

    # -- pipeline.RequestLog --------------------------------------------------------------------

    def record(self, record: RequestRecord) -> None:
        with self._changed:
            self._records.append(record)
            self.recorded += 1
            self._changed.notify_all()

    # -- queries --------------------------------------------------------------------------------

    def mark(self) -> float:
        """Now on the log's clock: pass as ``after=`` to see only what happens from here on."""
        return self._clock()

    def query(self, query: Query | None = None, **filters: Any) -> list[RequestRecord]:
        """Matching records, oldest first: ``log.query(verb="update", resource="leases",
        name="x", user="system:serviceaccount:kube-system:node2", since=5.0)``."""
        q = query or Query(**_normalize(filters))
        with self._changed:
            now = self._clock()
            return [r for r in self._records if q.matches(r, now)]

    def count(self, query: Query | None = None, **filters: Any) -> int:
        return len(self.query(query, **filters))

    def last(self, query: Query | None = None, **filters: Any) -> RequestRecord | None:
        found = self.query(query, **filters)
        return found[-1] if found else None

    def users(self, query: Query | None = None, **filters: Any) -> list[str]:
        """Distinct users among the matching records, in order of first appearance."""
        return list(dict.fromkeys(r.user for r in self.query(query, **filters)))

    def wait_for(
        self, count: int = 1, timeout: float = 10.0, query: Query | None = None, **filters: Any
    ) -> list[RequestRecord]:
        """Block until at least `count` records match (or `timeout` passes); returns them.

        For synchronising a test with a client it does not control; the caller asserts on the
        result, so a timeout shows up as a failed assertion, not as a hang.
        """
        q = query or Query(**_normalize(filters))
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                now = self._clock()
                found = [r for r in self._records if q.matches(r, now)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    def records(self) -> list[RequestRecord]:
        with self._changed:
            return list(self._records)

    def clear(self) -> None:
        with self._changed:
            self._records.clear()
            self.recorded = 0


def _normalize(filters: dict[str, Any]) -> dict[str, Any]:
    """Lists (from JSON) become tuples so Query stays hashable and `in` works."""
    unknown = set(filters) - set(Query.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown request-log filters: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out
