"""A module that follows one table: a job hands each batch of the table's changes to ``handle``,
woken by the commits themselves (``Consumer.wait``, no polling).

The change consumer is registered on ``start`` and unregistered on ``stop``. A batch that fails is
logged and marks the module Degraded until a later batch succeeds; the loop carries on with the
next batch (the failed one is not replayed: ``handle`` keeps its own view of the table, and the
next change of a row brings that row again).
"""

from __future__ import annotations

import logging
import threading
from typing import Generic, TypeVar

from agent.runtime import Clock, Health, HealthReporter, Job, RealClock
from statedb import Change, Consumer, Database, Table

log = logging.getLogger("l2announcer.agent")

R = TypeVar("R")

IDLE_WAKE = 5.0
"""Seconds between two looks at the feed when nothing is committed: commits wake the loop at
once, so this only bounds how long a missed wake-up could delay a batch."""


class ChangesLoop(Generic[R]):
    def __init__(
        self, db: Database, table: Table[R], name: str, *, clock: Clock | None = None
    ) -> None:
        self.db = db
        self.table = table
        self.name = name
        self.clock = clock or RealClock()
        self.health = HealthReporter(name, initial=Health.starting(f"waiting for {table.name}"))
        self._job = Job(name, self._run, wake=db.notify_waiters, health=self.health)
        self._consumer: Consumer[R] | None = None

    def handle(self, changes: list[Change[R]], first: bool) -> None:
        """One batch, in revision order; ``first`` is the table's contents at start."""
        raise NotImplementedError

    def start(self) -> None:
        self._consumer = self.db.register_consumer(self.name, self.table)
        self._job.start()

    def stop(self) -> None:
        self._job.stop()
        if self._consumer is not None:
            self._consumer.close()

    def _run(self, stopping: threading.Event) -> None:
        consumer = self._consumer
        assert consumer is not None, "started without a consumer"
        first, handled_one = True, False
        while not stopping.is_set():
            try:
                self.handle(consumer.changes(), first)
            except Exception as e:
                log.exception("%s: handling a batch of %s changes failed", self.name, self.table)
                self.health.failed(f"handling a batch of {self.table.name} changes failed: {e}")
            else:
                self.health.recovered()
                if not handled_one:  # OK from the first batch handled, and left alone after it
                    self.health.ok()
                    handled_one = True
            first = False
            consumer.wait(timeout=IDLE_WAKE, until=stopping.is_set)
