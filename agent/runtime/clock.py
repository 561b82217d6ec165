"""Injected time: no module of the agent calls ``time`` for a decision, so tests can move time.

Deadlines (lease expiry, retries, prunes, backoff) are kept in ``monotonic()`` seconds, so a
wall-clock step (NTP, a suspended VM) can neither fire every deadline at once nor stall them;
``now()`` is wall-clock time, only for display and timestamps written for people.
``real_timeout`` maps "this much clock time from now" to how long a thread should block: the real
clock blocks for exactly that long, the fake clock blocks until woken, because its time moves only
when a test calls ``advance()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences are meaningful."""
        ...

    def now(self) -> float:
        """Wall-clock seconds since the epoch, for display (``Status.updated_at``)."""
        ...

    def real_timeout(self, seconds: float) -> float | None:
        """How long to block (real seconds) for ``seconds`` of this clock to pass; None: until
        woken."""
        ...


class RealClock:
    """The clock of the running agent."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()

    def real_timeout(self, seconds: float) -> float | None:
        return max(0.0, seconds)


class FakeClock:
    """A clock for tests: it stands still until ``advance()``, which then calls the listeners
    (``on_advance``) so a waiting loop re-checks its deadlines. Thread-safe."""

    def __init__(self, monotonic: float = 1000.0, now: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._now = now
        self._listeners: list[Callable[[], None]] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def now(self) -> float:
        with self._lock:
            return self._now

    def real_timeout(self, seconds: float) -> float | None:
        return None

    def on_advance(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._monotonic += seconds
            self._now += seconds
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
