"""Writes to the API server off the caller's thread, keeping only the latest value per object.

The announcer's policy conditions and the Services' Announcing events are both written this way:
the caller (the announcer, the elector's callback) must never wait on a slow or throttled API,
and the writes share the agent's rate-limited client with lease renewals, so a value superseded
before it went out is never sent, and stopping drops what is still pending instead of draining
it. With ``essence``, a value whose essence equals the last one written for the key is skipped
(a failed write is forgotten, so the next submission writes again).

The writes run in a runtime job; its health is Degraded from a failed write until a later write
succeeds, so ``l2dbg status`` shows a status that cannot be written (RBAC, a webhook refusing it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from agent.runtime import Health, HealthReporter, Job

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LatestWriter(Generic[K, V]):
    def __init__(
        self,
        name: str,
        write: Callable[[K, V], None],
        on_error: Callable[[K, Exception], None],
        essence: Callable[[V], Hashable] | None = None,
    ) -> None:
        self.name = name
        self._write = write
        self._on_error = on_error
        self._essence = essence
        self._cond = threading.Condition()
        self._pending: dict[K, V] = {}
        self._sent: dict[K, Hashable] = {}
        self.health = HealthReporter(name, initial=Health.starting("not started"))
        self._job = Job(name, self._run, wake=self._wake, health=self.health)

    def submit(self, key: K, value: V) -> None:
        with self._cond:
            if (
                self._essence is not None
                and key not in self._pending
                and key in self._sent
                and self._sent[key] == self._essence(value)
            ):
                return
            self._pending[key] = value
            self._cond.notify()

    def start(self) -> None:
        self.health.ok()
        self._job.start()

    def stop(self) -> None:
        with self._cond:
            self._pending.clear()
        self._job.stop()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self, stopping: threading.Event) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: stopping.is_set() or bool(self._pending))
                if stopping.is_set():
                    return
                key = next(iter(self._pending))  # the oldest first
                value = self._pending.pop(key)
                if (
                    self._essence is not None
                ):  # marked now: an equal submission meanwhile is skipped
                    self._sent[key] = self._essence(value)
            try:
                self._write(key, value)
            except Exception as e:
                with self._cond:
                    self._sent.pop(key, None)
                what = "/".join(map(str, key)) if isinstance(key, tuple) else str(key)
                self.health.degraded(f"writing {what} failed: {e}")
                self._on_error(key, e)
            else:
                self.health.ok()
