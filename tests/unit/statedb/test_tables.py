"""The catalogue's table definitions: key order and round trips through SQLite."""

from __future__ import annotations

from common.tables import CATALOGUE, L2_ANNOUNCE
from common.tables.l2_announce import L2AnnounceEntry, Origin
from statedb import Database, Status, StatusKind


def test_l2_announce_prints_in_the_references_key_order() -> None:
    entries = [
        L2AnnounceEntry("198.51.100.10", "eth0"),
        L2AnnounceEntry("2001:db8::1", "eth0"),
        L2AnnounceEntry("198.51.100.9", "eth1"),
        L2AnnounceEntry("198.51.100.9", "eth0"),
        L2AnnounceEntry("192.0.2.200", "eth0"),
    ]
    # By the 16-byte form: IPv4 as ::ffff:a.b.c.d (numeric, not text order), below 2001:db8::.
    assert [(e.ip, e.network_interface) for e in L2_ANNOUNCE.sorted(entries)] == [
        ("192.0.2.200", "eth0"),
        ("198.51.100.9", "eth0"),
        ("198.51.100.9", "eth1"),
        ("198.51.100.10", "eth0"),
        ("2001:db8::1", "eth0"),
    ]


def test_every_catalogue_table_round_trips_its_rows() -> None:
    with Database.open(None, CATALOGUE.values()) as db:
        entry = L2AnnounceEntry(
            "198.51.100.10",
            "eth0",
            (Origin("default", "red"), Origin("", "cluster-scoped")),
            Status(StatusKind.ERROR, "create 198.51.100.10@2: no such device", 1.5),
        )
        with db.write_txn(L2_ANNOUNCE) as txn:
            txn.upsert(L2_ANNOUNCE, entry)
        with db.read_txn() as r:
            assert r.all(L2_ANNOUNCE) == [entry]
    assert str(Origin("", "cluster-scoped")) == "cluster-scoped"
    assert str(Origin("default", "red")) == "default/red"
