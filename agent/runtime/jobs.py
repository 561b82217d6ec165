"""Background work under a guard: the only place in the agent that starts threads.

- ``Job``: a loop function ``run(stopping)`` that returns once ``stopping`` is set. If it raises,
  the failure is logged, the job's health turns Degraded and ``run`` is called again after an
  exponential backoff; the next call that gets past one full round (``job.healthy()``) or returns
  cleanly clears it. A job never dies silently.
- ``Timer``: ``fn()`` every ``interval`` seconds; a failing call marks the job Degraded until a
  call succeeds.
- ``OneShot``: ``fn(stopping)`` once, retried with backoff until it succeeds or the job stops.

``stop()`` sets the stop event, calls the job's ``wake`` (to unblock a loop waiting on something
other than the event: a condition, a database change feed) and joins the thread with a timeout, so
one stuck job can delay the agent's shutdown by at most that timeout, never hang it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.runtime.health import Health, HealthReporter

log = logging.getLogger("l2announcer.runtime")

STOP_TIMEOUT = 2.0
"""Seconds ``stop()`` waits for a job's thread by default: long enough for a loop to finish one
API request with a short timeout, short enough that shutdown stays within the pod's grace."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retrying after the n-th consecutive failure: ``first * 2**(n-1)``, capped.
    Seconds; a persistent bug logs about twice a minute, not in a hot loop."""

    first: float = 1.0
    cap: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.cap, self.first * 2 ** max(0, failures - 1)))


class Job:
    def __init__(
        self,
        name: str,
        run: Callable[[threading.Event], object],
        *,
        wake: Callable[[], None] | None = None,
        health: HealthReporter | None = None,
        backoff: Backoff = Backoff(),
    ) -> None:
        self.name = name
        self.health = health or HealthReporter(name)
        self.stopping = threading.Event()
        self._run_fn = run
        self._wake = wake
        self._backoff = backoff
        self._thread: threading.Thread | None = None
        self.failures = 0  # consecutive; reset by a success

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"job {self.name} was already started")
        self.stopping.clear()
        self._thread = threading.Thread(target=self._guarded, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop and wait up to ``timeout`` seconds; True if the thread ended. Never raises."""
        self.stopping.set()
        if self._wake is not None:
            try:
                self._wake()
            except Exception:
                log.exception("waking job %s to stop failed", self.name)
        thread = self._thread
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        if thread.is_alive():
            log.warning("job %s did not stop within %.1fs", self.name, timeout)
            return False
        # A failure caught while stopping would otherwise outlive the job: Stopped is the truth.
        self.health.recovered()
        self.health.stopped()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to end by itself (a one-shot, a loop that returned)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    # -- guard ------------------------------------------------------------------------------------

    def succeeded(self) -> None:
        """Called by a long-running ``run`` once it is past its start, so an earlier failure no
        longer marks the job Degraded while it keeps running."""
        if self.failures:
            self.failures = 0
            self.health.recovered()

    def _guarded(self) -> None:
        while not self.stopping.is_set():
            try:
                self._run_once()
            except Exception as e:
                self.failures += 1
                delay = self._backoff.delay(self.failures)
                message = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                self.health.failed(f"{message} (retrying in {delay:g}s)")
                if self.failures == 1:
                    log.exception("job %s failed; retrying in %gs", self.name, delay)
                else:
                    log.error("job %s failed again (%d): %s", self.name, self.failures, message)
                self.stopping.wait(delay)
                continue
            # A loop's run returns only when asked to stop; returning otherwise ends the job.
            self.succeeded()
            return

    def _run_once(self) -> None:
        self._run_fn(self.stopping)


class Timer(Job):
    """``fn()`` every ``interval`` seconds, the first after ``first`` seconds (default: at once)."""

    def __init__(
        self,
        name: str,
        interval: float,
        fn: Callable[[], object],
        *,
        first: float = 0.0,
        health: HealthReporter | None = None,
    ) -> None:
        super().__init__(name, self._loop, health=health)
        self.interval = interval
        self.first = first
        self._fn = fn
        if health is None:
            self.health.ok()

    def _loop(self, stopping: threading.Event) -> None:
        delay = self.first
        while not stopping.wait(delay):
            delay = self.interval
            try:
                self._fn()
            except Exception as e:
                self.health.failed(f"{type(e).__name__}: {e}")
                log.warning("%s: %s", self.name, e)
                continue
            self.health.recovered()


class OneShot(Job):
    """``fn(stopping)`` once; retried with backoff while it raises, until the job is stopped."""

    def __init__(
        self,
        name: str,
        fn: Callable[[threading.Event], object],
        *,
        wake: Callable[[], None] | None = None,
        health: HealthReporter | None = None,
        backoff: Backoff = Backoff(),
        done: Health | None = None,
    ) -> None:
        super().__init__(name, fn, wake=wake, health=health, backoff=backoff)
        self._done = done or Health.ok("done")

    def _run_once(self) -> None:
        super()._run_once()
        if not self.stopping.is_set():
            self.health.set(self._done)
