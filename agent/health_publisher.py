"""The health publisher: every interval, the health of each module and job (the agent's
``HealthRegistry``) into the ``health`` table, where ``l2dbg status``, the metrics and the
DaemonSet's probes read it.

A row is written only when its level or message changed (no write, no revision otherwise), and its
``since`` moves only when the level does, so an operator tells a blip from a module degraded for an
hour. The ``agent`` row is the heartbeat: rewritten at every publish whatever the modules say, it
proves that this loop, and so the process, runs; the liveness probe checks its age.

The last publication is also kept in memory (``last``), where the agent's HTTP probes
(``agent/health_server.py``) read it without touching the database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from agent.runtime import Clock, Health, HealthRegistry, Timer
from common.tables.health import HEALTH, HEARTBEAT
from common.tables.health import Health as HealthRow
from statedb import Database


@dataclass(frozen=True, slots=True)
class Published:
    """One publication, once committed: when (the clock's monotonic seconds) and what."""

    at: float
    health: Mapping[str, Health]


class HealthPublisher:
    name = "health"

    def __init__(
        self, db: Database, registry: HealthRegistry, *, interval: float, clock: Clock
    ) -> None:
        self.db = db
        self.registry = registry
        self.clock = clock
        self.last: Published | None = None
        # The first timed publish one interval after start(), which publishes at once itself.
        self.job = Timer(self.name, interval, self.publish, first=interval)

    def publish(self) -> None:
        snapshot = self.registry.snapshot()
        now = self.clock.now()
        with self.db.write_txn(HEALTH) as txn:
            for module, health in snapshot.items():
                level, message = health.level.value, health.message
                old = txn.get(HEALTH, module)
                if old is not None and (old.level, old.message) == (level, message):
                    continue
                since = old.since if old is not None and old.level == level else now
                txn.upsert(HEALTH, HealthRow(module, level, message, since, now))
            old = txn.get(HEALTH, HEARTBEAT)
            since = old.since if old is not None else now
            txn.upsert(HEALTH, HealthRow(HEARTBEAT, "OK", f"pid {os.getpid()}", since, now))
        # Only a committed publication counts: a publisher that cannot write its table is as
        # dead to the probes as one that stopped.
        self.last = Published(self.clock.monotonic(), snapshot)

    def start(self) -> None:
        """Publish now, so the table lists every module once the agent has started, then every
        interval."""
        self.publish()
        self.job.start()

    def stop(self) -> None:
        self.job.stop()
