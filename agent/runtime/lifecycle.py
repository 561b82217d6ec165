"""Start hooks in order, stop hooks in reverse: the agent's modules are appended in dependency
order, so every module starts after what it reads from and stops before it.

A start that fails stops, in reverse, everything that had started, then raises ``StartError``
naming the hook: the agent never runs half-started. Stop hooks never raise (a failure is logged
and the next hook runs), and a slow hook is logged with its duration, because shutdown time is a
budget (a planned handover must finish within the pod's grace period).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("l2announcer.runtime")

SLOW_START = 1.0
"""Seconds after which a start hook is logged as slow."""

SLOW_STOP = 0.3
"""Seconds after which a stop hook is logged as slow: stop hooks share a ~2 s shutdown budget."""


class StartError(RuntimeError):
    """A start hook failed; what had started is stopped again."""


class Startable(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> object: ...


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    start: Callable[[], object] | None = None
    stop: Callable[[], object] | None = None


class Lifecycle:
    def __init__(self) -> None:
        self._hooks: list[Hook] = []
        self._started: list[Hook] = []
        self._stopped = False

    def append(
        self,
        name: str,
        start: Callable[[], object] | None = None,
        stop: Callable[[], object] | None = None,
    ) -> None:
        self._hooks.append(Hook(name, start, stop))

    def append_job(self, job: Startable) -> None:
        """A job (or any object with ``name``, ``start`` and ``stop``)."""
        self.append(job.name, job.start, job.stop)

    @property
    def names(self) -> list[str]:
        return [h.name for h in self._hooks]

    def start(self) -> None:
        for hook in self._hooks[len(self._started) :]:
            t0 = time.monotonic()
            try:
                if hook.start is not None:
                    hook.start()
            except Exception as e:
                log.error("starting %s failed: %s; stopping what started", hook.name, e)
                self.stop()
                raise StartError(f"starting {hook.name}: {e}") from e
            self._started.append(hook)
            took = time.monotonic() - t0
            if took > SLOW_START:
                log.info("starting %s took %.2fs", hook.name, took)

    def stop(self) -> None:
        """Stop what started, in reverse order; never raises. Runs once."""
        if self._stopped:
            return
        self._stopped = True
        for hook in reversed(self._started):
            if hook.stop is None:
                continue
            t0 = time.monotonic()
            try:
                hook.stop()
            except Exception:
                log.exception("stopping %s failed", hook.name)
            took = time.monotonic() - t0
            if took > SLOW_STOP:
                log.info("stopping %s took %.2fs", hook.name, took)
