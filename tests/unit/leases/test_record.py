"""The election's LeaseRecord and the watched leases table's row map field for field."""

from __future__ import annotations

import dataclasses

from agent.leases.record import RECORD_FIELDS, LeaseRecord, record_from_row, row_from_record
from common.tables.leases import Lease


def test_the_row_is_the_record_plus_the_name() -> None:
    assert tuple(f.name for f in dataclasses.fields(Lease)) == ("name", *RECORD_FIELDS)


def test_record_and_row_convert_both_ways() -> None:
    record = LeaseRecord("node1", 15, "a", "b", 3, "42")
    row = row_from_record("cilium-l2announce-default-svc", record)
    assert row == Lease("cilium-l2announce-default-svc", "node1", 15, "a", "b", 3, "42")
    assert record_from_row(row) == record


def test_the_same_record_whatever_its_resource_version() -> None:
    record = LeaseRecord("node1", 15, "a", "b", 3, "42")
    assert record.same_record(dataclasses.replace(record, resource_version="43"))
    assert not record.same_record(dataclasses.replace(record, renew_time="c"))
    assert not record.same_record(None)
