"""Typed health: each job (and each module without a job of its own) has a ``HealthReporter``; the
``HealthRegistry`` collects them for the publisher that writes the ``health`` table.

A level is a value, never a string parsed back: ``Level.DEGRADED``, not a message starting with
"Degraded". A reporter's health is either what its owner last ``set`` or, when the owner prefers to
compute it on demand from its own state, what its ``probe`` returns at publish time. A failure the
job's guard caught wins over both until the job next succeeds, so a loop that keeps crashing can
never look healthy because its probe reads stale state.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass


class Level(enum.Enum):
    OK = "OK"
    STARTING = "Starting"  # not ready yet, and nothing wrong: waiting for its inputs
    DEGRADED = "Degraded"
    STOPPED = "Stopped"


@dataclass(frozen=True, slots=True)
class Health:
    level: Level
    message: str = ""

    @classmethod
    def ok(cls, message: str = "") -> Health:
        return cls(Level.OK, message)

    @classmethod
    def starting(cls, message: str) -> Health:
        return cls(Level.STARTING, message)

    @classmethod
    def degraded(cls, message: str) -> Health:
        return cls(Level.DEGRADED, message)

    @classmethod
    def stopped(cls, message: str = "") -> Health:
        return cls(Level.STOPPED, message)

    @property
    def is_ok(self) -> bool:
        return self.level is Level.OK

    def __str__(self) -> str:
        return f"{self.level.value}: {self.message}" if self.message else self.level.value


class HealthReporter:
    """One named health, thread-safe. Owners call ``ok``/``degraded``/... or give a ``probe``."""

    def __init__(
        self,
        name: str,
        probe: Callable[[], Health] | None = None,
        initial: Health | None = None,
    ) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._set = initial or Health.starting("not started")
        self._probe = probe
        self._failure: Health | None = None  # the job guard's: wins until the next success

    # -- what owners report --------------------------------------------------------------------

    def set(self, health: Health) -> None:
        with self._lock:
            self._set = health

    def ok(self, message: str = "") -> None:
        self.set(Health.ok(message))

    def starting(self, message: str) -> None:
        self.set(Health.starting(message))

    def degraded(self, message: str) -> None:
        self.set(Health.degraded(message))

    def stopped(self, message: str = "") -> None:
        self.set(Health.stopped(message))

    def set_probe(self, probe: Callable[[], Health] | None) -> None:
        with self._lock:
            self._probe = probe

    # -- what a job's guard reports ------------------------------------------------------------

    def failed(self, message: str) -> None:
        with self._lock:
            self._failure = Health.degraded(message)

    def recovered(self) -> None:
        with self._lock:
            self._failure = None

    # -- reading -------------------------------------------------------------------------------

    def current(self) -> Health:
        """The health now; a probe that raises is itself a degradation, never an exception."""
        with self._lock:
            failure, probe, value = self._failure, self._probe, self._set
        if failure is not None:
            return failure
        if probe is None or value.level is Level.STOPPED:
            return value
        try:
            return probe()
        except Exception as e:  # a broken probe must not take the publisher down
            return Health.degraded(f"health check failed: {e}")


class HealthRegistry:
    """The reporters of every module and job, by name (names are the ``health`` table's key)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reporters: dict[str, HealthReporter] = {}

    def reporter(self, name: str, probe: Callable[[], Health] | None = None) -> HealthReporter:
        """A new reporter registered under ``name`` (a second one under a name is a bug)."""
        return self.add(HealthReporter(name, probe))

    def add(self, reporter: HealthReporter) -> HealthReporter:
        with self._lock:
            if reporter.name in self._reporters:
                raise ValueError(f"health {reporter.name!r} is registered twice")
            self._reporters[reporter.name] = reporter
        return reporter

    def snapshot(self) -> dict[str, Health]:
        with self._lock:
            reporters = list(self._reporters.values())
        return {r.name: r.current() for r in reporters}
