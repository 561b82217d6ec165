"""The parts of a coordination.k8s.io/v1 Lease that an election reads and writes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

LEASE_PREFIX = "cilium-l2announce"


def lease_name(service_namespace: str, service_name: str) -> str:
    """The reference's name: no escaping, no truncation (an over-long name fails at the API)."""
    return f"{LEASE_PREFIX}-{service_namespace}-{service_name}"


def micro_time(wall_seconds: float) -> str:
    """A MicroTime as the API server demands it: RFC 3339 in UTC with exactly six digits."""
    t = dt.datetime.fromtimestamp(wall_seconds, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    holder: str = ""
    duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0
    resource_version: str = ""  # not part of the record's identity, see same_record()

    def same_record(self, other: LeaseRecord | None) -> bool:
        """Whether ``other`` holds the same election data (client-go compares the raw record)."""
        return other is not None and (
            self.holder,
            self.duration_seconds,
            self.acquire_time,
            self.renew_time,
            self.transitions,
        ) == (
            other.holder,
            other.duration_seconds,
            other.acquire_time,
            other.renew_time,
            other.transitions,
        )
