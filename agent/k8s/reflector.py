"""Reflectors: list + watch one kind of Kubernetes object into a state database table.

A reflector lists (a consistent read), replaces the table's rows with what it got in one write
transaction, marks the table initialized, then watches from the list's resourceVersion, applying
each event as it comes. It reads raw JSON (``_preload_content=False``), not the client's models,
to step around the traps of ``kubernetes.watch.Watch``: bookmarks handed through as dicts, a
silent single retry on 410, reconnects without backoff, strict model parsing.

- A watch that ends (server timeout) resumes from the last resourceVersion seen.
- ``410 Gone`` (in the response or as an in-stream ERROR event) means the history is compacted:
  relist.
- Any other failure backs off exponentially (0.8 s doubling to 30 s, jittered) and relists; a
  failure that repeats is logged once, and a 404 on the first list (a CRD not installed yet) is
  logged once as "waiting for ..." and retried until the resource appears.
- A mapping marked ``optional`` (data the agent can work without) has its table marked
  initialized while empty when the first list is refused with 403 or 404, so that readers
  waiting for it go on; the reflector keeps retrying and fills it once it may.
- Each event is turned into a row by ``to_row`` (None drops the object, e.g. a Service another
  load balancer class owns); a DELETED event, or an object whose row became None, deletes it.

Each reflector is one job; its health is Starting until the first list, OK while listing and
watching work, Degraded (with the error) while they fail.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from agent.runtime import Clock, Health, HealthReporter, Job, Level, RealClock
from statedb import Database, Table

log = logging.getLogger("l2announcer.k8s")

R = TypeVar("R")
Obj = dict[str, Any]

BACKOFF_MIN = 0.8
BACKOFF_MAX = 30.0
WATCH_TIMEOUT = 300  # seconds the server holds one watch open (timeoutSeconds)


class ApiStatusError(Exception):
    """A non-2xx answer (or an ERROR watch event) with its HTTP status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Source(Protocol):
    """One kind of object, listed and watched (implemented over the kubernetes client)."""

    description: str  # e.g. "services", "ciliuml2announcementpolicies.cilium.io"

    def list(self) -> tuple[list[Obj], str]:
        """Every object and the list's resourceVersion; raises ApiStatusError."""
        ...

    def watch(self, resource_version: str, stop: threading.Event) -> Iterator[Obj]:
        """Watch events ({"type", "object"}) from ``resource_version``, bookmarks included; ends
        when the server ends the stream; raises ApiStatusError or a transport error."""
        ...

    def interrupt(self) -> None:
        """Unblock a watch waiting for the server (on stop)."""
        ...


@dataclass(frozen=True)
class RowMapping(Generic[R]):
    table: Table[R]
    to_row: Callable[[Obj], R | None]
    key_of: Callable[[Obj], tuple[Any, ...]]  # the row's primary key, from the object
    optional: bool = False
    """The agent can work without these objects: when the first list is refused (403: the RBAC
    rule is missing, as after an upgrade of the image alone; 404: not served), the table is
    marked initialized while empty, so that its readers go on as if there were none, and the
    reflector keeps retrying (Degraded meanwhile)."""


class Reflector(Generic[R]):
    def __init__(
        self,
        db: Database,
        source: Source,
        mapping: RowMapping[R],
        *,
        name: str | None = None,
        rand: Callable[[], float] = random.random,
        on_event: Callable[[str, Obj], None] | None = None,
        backoff: tuple[float, float] = (BACKOFF_MIN, BACKOFF_MAX),
        clock: Clock | None = None,
    ) -> None:
        self.db = db
        self.source = source
        self.mapping = mapping
        self.name = name or f"reflector:{source.description}"
        self._rand = rand
        self._on_event = on_event
        self._backoff_min, self._backoff_max = backoff
        self._clock = clock or RealClock()
        self._woken = threading.Event()  # ends a backoff pause early: stop, or fake time moved
        add_listener = getattr(self._clock, "on_advance", None)
        if add_listener is not None:
            add_listener(self._woken.set)
        self._last_error = ""
        self.health = HealthReporter(self.name, initial=Health(Level.STARTING))
        self._job = Job(self.name, self._run, wake=self._interrupt, health=self.health)
        self.lists = 0  # for tests: how many times it (re)listed
        table = mapping.table
        with db.write_txn(table) as txn:
            txn.register_initializer(table, self.name)

    def start(self) -> None:
        self._job.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._job.stop(timeout)

    def _interrupt(self) -> None:
        self._woken.set()
        self.source.interrupt()  # a watch blocks until the server sends something

    # -- the loop -----------------------------------------------------------------------------

    def _run(self, stopping: threading.Event) -> None:
        backoff = self._backoff_min
        while not stopping.is_set():
            try:
                rv = self._relist()
                backoff = self._backoff_min
                self._ok()
                while not stopping.is_set():
                    rv = self._watch_once(rv, stopping)
                    self._ok()
            except ApiStatusError as e:
                if e.status == 410:
                    log.info("%s: resourceVersion too old, relisting", self.name)
                    continue
                self._failed(e, e.status)
                if e.status in (403, 404) and self.mapping.optional and self.lists == 0:
                    self._go_on_without()
            except Exception as e:  # transport errors, bad JSON: never kill the reflector
                self._failed(e, 0)
            self._pause(backoff * (1 + self._rand() * 0.5), stopping)
            backoff = min(self._backoff_max, backoff * 2)

    def _pause(self, seconds: float, stopping: threading.Event) -> None:
        """Wait ``seconds`` of the clock before retrying, or until stopped."""
        clock = self._clock
        until = clock.monotonic() + seconds
        while not stopping.is_set():
            left = until - clock.monotonic()
            if left <= 0:
                return
            self._woken.wait(clock.real_timeout(left))
            self._woken.clear()  # both conditions are checked again after this: no lost wake-up

    def _ok(self) -> None:
        if self._last_error:
            log.info("%s: recovered", self.name)
        self._last_error = ""
        self.health.ok()
        self._job.succeeded()  # clears a failure the job's guard caught, if any

    def _failed(self, e: Exception, status: int) -> None:
        what = str(e) or type(e).__name__
        if status == 404 and self.lists == 0:
            what = f"waiting for {self.source.description} to be served (404)"
        if what != self._last_error:
            log.warning("%s: %s", self.name, what)
        self._last_error = what
        self.health.degraded(what)

    def _go_on_without(self) -> None:
        """An optional table nobody may fill yet: initialized while empty (once)."""
        table = self.mapping.table
        with self.db.write_txn(table) as txn:
            if txn.initialized(table):
                return
            txn.initializer_done(table, self.name)
        log.warning(
            "%s: going on without %s until it can be listed (%s)",
            self.name,
            self.source.description,
            self._last_error,
        )

    def _relist(self) -> str:
        objects, rv = self.source.list()
        m = self.mapping
        rows = {}
        for obj in objects:
            row = m.to_row(obj)
            if row is not None:
                rows[m.table.key_of(row)] = row
        with self.db.write_txn(m.table) as txn:
            for old in txn.all(m.table):
                if m.table.key_of(old) not in rows:
                    txn.delete(m.table, old)
            for row in rows.values():
                txn.upsert(m.table, row)
            if self.lists == 0:
                txn.initializer_done(m.table, self.name)
        self.lists += 1
        for obj in objects:
            self._notify("ADDED", obj)
        return rv

    def _watch_once(self, rv: str, stopping: threading.Event) -> str:
        m = self.mapping
        for event in self.source.watch(rv, stopping):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                raise ApiStatusError(int(obj.get("code") or 500), str(obj.get("message", "")))
            new_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if kind == "BOOKMARK":
                rv = new_rv or rv
                continue
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            row = None if kind == "DELETED" else m.to_row(obj)
            with self.db.write_txn(m.table) as txn:
                if row is None:
                    txn.delete_key(m.table, *m.key_of(obj))
                else:
                    txn.upsert(m.table, row)
            self._notify(kind, obj)
            rv = new_rv or rv
            if stopping.is_set():
                break
        return rv

    def _notify(self, kind: str, obj: Obj) -> None:
        if self._on_event is not None:
            self._on_event(kind, obj)


class KubernetesSource:
    """A Source over a list function of the official client (``CoreV1Api.list_node``, ...)."""

    def __init__(
        self,
        description: str,
        list_fn: Callable[..., Any],
        *args: Any,
        request_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        self.description = description
        self._fn = list_fn
        self._args = args
        self._kwargs = kwargs
        self._timeout = request_timeout
        self._response: Any = None

    def _call(self, **extra: Any) -> Any:
        import kubernetes

        try:
            return self._fn(*self._args, **self._kwargs, _preload_content=False, **extra)
        except kubernetes.client.ApiException as e:
            raise ApiStatusError(int(e.status or 0), _api_message(e)) from None

    def list(self) -> tuple[list[Obj], str]:
        resp = self._call(_request_timeout=self._timeout)
        data = json.loads(resp.data)
        return list(data.get("items") or []), str(data["metadata"]["resourceVersion"])

    def watch(self, resource_version: str, stop: threading.Event) -> Iterator[Obj]:
        resp = self._call(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT,
            _request_timeout=(self._timeout, WATCH_TIMEOUT + 30),
        )
        self._response = resp
        try:
            buf = b""
            for chunk in resp.stream(4096, decode_content=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
                if stop.is_set():
                    return
        finally:
            self._response = None
            resp.release_conn()

    def interrupt(self) -> None:
        resp = self._response
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()  # urllib3 >= 2.3: unblocks a read in another thread


def _api_message(e: Any) -> str:
    try:
        return str(json.loads(e.body).get("message") or e.reason)
    except (TypeError, ValueError, AttributeError):
        return f"{e.status} {e.reason}"
