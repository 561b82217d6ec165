"""Writes to the API server off the caller's thread, keeping only the latest value per object.

The announcer's policy conditions and the announcing-node annotation are both written this way:
the caller (the announcer, the elector's callback) must never wait on a slow or throttled API,
and the writes share the agent's rate-limited client with lease renewals, so a value superseded
before it went out is never sent, and stopping drops what is still pending instead of draining
it. With ``essence``, a value whose essence equals the last one written for the key is skipped
(a failed write is forgotten, so the next submission writes again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

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
        self._name = name
        self._write = write
        self._on_error = on_error
        self._essence = essence
        self._cond = threading.Condition()
        self._pending: dict[K, V] = {}
        self._sent: dict[K, Hashable] = {}
        self._stop = False
        self._thread: threading.Thread | None = None

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
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
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
                self._on_error(key, e)
