"""Writes policy conditions to the CiliumL2AnnouncementPolicy status subresource, off the
announcer's thread (a stalled API must not hold up announcements).

The announcer submits what it computed; the writer drops what it already sent (compared on type,
status, message and observedGeneration, not on the timestamp, which the announcer recomputes) and
sends the latest per policy. A failed write is logged and forgotten, so the announcer's next pass
submits it again.

The write itself, over the Kubernetes API, is agent/k8s/policy_status.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.latest_writer import LatestWriter

log = logging.getLogger("l2announcer.announcer")

Patch = Callable[[str, list[dict[str, Any]]], None]  # (policy name, conditions)


def _essence(conditions: list[dict[str, Any]]) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (c.get("type"), c.get("status"), c.get("message"), c.get("observedGeneration"))
        for c in conditions
    )


class PolicyStatusWriter:
    def __init__(self, patch: Patch) -> None:
        self._patch = patch
        self._writer: LatestWriter[str, list[dict[str, Any]]] = LatestWriter(
            "policy-status", self._write, self._failed, essence=_essence
        )
        self.name = self._writer.name
        self.health = self._writer.health
        self.writes = 0

    def submit(self, name: str, conditions: list[dict[str, Any]]) -> None:
        """The conditions to write for policy ``name`` (they carry its observedGeneration)."""
        self._writer.submit(name, conditions)

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        self._writer.stop()

    def _write(self, name: str, conditions: list[dict[str, Any]]) -> None:
        self._patch(name, conditions)
        self.writes += 1

    def _failed(self, name: str, e: Exception) -> None:
        log.warning("updating policy status failed: %s: %s", name, e)
