"""The parts of a coordination.k8s.io/v1 Lease that an election reads and writes, MicroTime as
the API server demands it, and the one mapping between a record and a row of the watched
``leases`` table (the row is the record plus the lease's name, field for field)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from common.tables.leases import Lease


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
        """Whether ``other`` holds the same election data, whatever its resourceVersion
        (client-go compares the raw record, which has none)."""
        return other is not None and dataclasses.replace(
            self, resource_version=""
        ) == dataclasses.replace(other, resource_version="")


RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(LeaseRecord))


def record_from_row(row: Lease) -> LeaseRecord:
    return LeaseRecord(**{f: getattr(row, f) for f in RECORD_FIELDS})


def row_from_record(name: str, record: LeaseRecord) -> Lease:
    return Lease(name, **{f: getattr(record, f) for f in RECORD_FIELDS})
