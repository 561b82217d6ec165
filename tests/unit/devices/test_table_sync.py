"""DeviceTableSync: full listings and batches against an in-memory state database."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from agent.devices.options import DevicesOptions
from agent.devices.table_sync import DeviceTableSync
from common.tables.devices import DEVICES, Device
from statedb import Database

from .helpers import addr, gone, link, route, uplink


@pytest.fixture
def db() -> Iterator[Database]:
    d = Database.open(None, [DEVICES])
    yield d
    d.close()


def rows(db: Database) -> dict[str, Device]:
    with db.read_txn() as r:
        return {d.name: d for d in r.all(DEVICES)}


def listing() -> list[Any]:
    return [
        link(1, "lo", flags=0x49),
        addr(1, "127.0.0.1", 8),
        route(1, "127.0.0.1/32", table=255),
        *uplink(2, "eth0", "198.51.100.2", "198.51.100.0/24"),
        *uplink(3, "veth0", "203.0.113.2", "203.0.113.0/24", kind="veth"),
        link(4, "br0", "bridge"),
    ]


def make(db: Database, **kw: Any) -> DeviceTableSync:
    s = DeviceTableSync(db, DevicesOptions(**kw))
    s.register_initializer()
    return s


def test_full_listing_writes_every_link_and_initializes(db: Database) -> None:
    s = make(db)
    assert not db.initialized(DEVICES)
    s.full_sync(listing(), 0.0)
    assert db.initialized(DEVICES)
    got = rows(db)
    assert sorted(got) == ["br0", "eth0", "lo", "veth0"]
    assert got["eth0"].selected and got["eth0"].not_selected_reason == ""
    assert got["lo"].not_selected_reason == "excluded flag set (mask=0x808, flags=0x49)"
    assert got["veth0"].not_selected_reason == "veth without default route"
    assert got["br0"].not_selected_reason == "device has no addresses"
    assert s.selected_names() == ["eth0"]


def test_a_default_route_makes_a_veth_selected(db: Database) -> None:
    s = make(db)
    s.full_sync(listing(), 0.0)
    assert s.apply_batch([route(3, "0.0.0.0/0", gw="203.0.113.1")], 1.0)
    assert rows(db)["veth0"].selected
    assert s.selected_names() == ["eth0", "veth0"]


def test_one_transaction_per_batch(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(db)
    s.full_sync(listing(), 0.0)
    opened = []
    real = db.write_txn

    def counting(*tables: Any) -> Any:
        opened.append(tables)
        return real(*tables)

    monkeypatch.setattr(db, "write_txn", counting)
    batch = [
        *uplink(5, "eth1", "192.0.2.5", "192.0.2.0/24"),
        route(3, "0.0.0.0/0", gw="203.0.113.1"),
        addr(2, "198.51.100.3"),
    ]
    assert s.apply_batch(batch, 1.0)
    assert len(opened) == 1
    got = rows(db)
    assert got["eth1"].selected and got["veth0"].selected
    assert [a.addr for a in got["eth0"].addresses] == ["198.51.100.2", "198.51.100.3"]


def test_a_batch_that_changes_nothing_writes_nothing(db: Database) -> None:
    s = make(db)
    s.full_sync(listing(), 0.0)
    rev = db.revision(DEVICES)
    assert not s.apply_batch([addr(2, "198.51.100.2")], 1.0)  # already there
    assert not s.apply_batch([route(2, "192.0.2.0/24", table=100)], 1.0)  # still selected
    assert db.revision(DEVICES) == rev


def test_link_delete_removes_row_and_late_messages_are_ignored(db: Database) -> None:
    s = make(db)
    s.full_sync(listing(), 0.0)
    s.apply_batch([gone(2)], 1.0)
    assert "eth0" not in rows(db)
    assert not s.apply_batch([addr(2, "198.51.100.7"), route(2, "198.51.100.0/24")], 1.1)
    with db.read_txn() as r:
        assert r.get(DEVICES, 2) is None
    # Deleted and re-added within one batch: the new link wins.
    s.apply_batch([*uplink(2, "eth0", "198.51.100.2", "198.51.100.0/24")], 2.0)
    assert rows(db)["eth0"].selected
    s.apply_batch([gone(2), *uplink(2, "eth0", "198.51.100.4", "198.51.100.0/24")], 3.0)
    assert [a.addr for a in rows(db)["eth0"].addresses] == ["198.51.100.4"]


def test_addresses_before_the_link(db: Database) -> None:
    s = make(db)
    s.full_sync([], 0.0)
    s.apply_batch([addr(7, "192.0.2.7")], 1.0)
    with db.read_txn() as r:
        row = r.get(DEVICES, 7)
    assert row is not None and row.not_selected_reason == "link not seen yet"
    s.apply_batch([link(7, "eth7"), route(7, "192.0.2.0/24")], 2.0)
    assert rows(db)["eth7"].selected


def test_user_filter(db: Database) -> None:
    s = make(db, devices=("veth+", "br0"))
    s.full_sync(listing(), 0.0)
    got = rows(db)
    assert got["veth0"].selected  # no default route needed when named
    assert got["eth0"].not_selected_reason == "not matching user filter [veth+ br0]"
    assert got["br0"].not_selected_reason == "device has no addresses"
    s.apply_batch([addr(4, "192.0.2.4")], 1.0)
    assert rows(db)["br0"].selected


def test_relist_rebuilds_in_one_transaction_and_keeps_unchanged_rows(db: Database) -> None:
    s = make(db)
    s.full_sync(listing(), 0.0)
    with db.read_txn() as r:
        eth0_rev = r.get_with_revision(DEVICES, 2)
    relisted = [x for x in listing() if getattr(x, "ifindex", None) != 4]  # br0 vanished
    relisted += uplink(6, "eth2", "192.0.2.6", "192.0.2.0/24")
    s.full_sync(relisted, 5.0)
    got = rows(db)
    assert sorted(got) == ["eth0", "eth2", "lo", "veth0"]
    with db.read_txn() as r:
        assert r.get_with_revision(DEVICES, 2) == eth0_rev  # untouched
    assert db.initialized(DEVICES)


def test_devices_changed_is_logged_when_the_selected_set_changes(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.devices")
    s = make(db)
    s.full_sync(listing(), 0.0)
    assert [r.getMessage() for r in caplog.records] == ["Devices changed devices=[eth0]"]
    caplog.clear()
    s.apply_batch([addr(2, "198.51.100.3")], 1.0)  # row changes, selection does not
    assert caplog.records == []
    s.apply_batch([route(3, "0.0.0.0/0", gw="203.0.113.1")], 2.0)
    assert [r.getMessage() for r in caplog.records] == ["Devices changed devices=[eth0 veth0]"]


def test_no_row_for_unselected_reevaluation_without_change(db: Database) -> None:
    """Unselected devices are re-evaluated after every batch, but only real changes write."""
    s = make(db)
    s.full_sync(listing(), 0.0)
    with db.read_txn() as r:
        before = r.all_with_revision(DEVICES)
    s.apply_batch([addr(2, "198.51.100.9")], 1.0)
    with db.read_txn() as r:
        after = dict((d.ifindex, rev) for d, rev in r.all_with_revision(DEVICES))
    for d, rev in before:
        if d.ifindex != 2:
            assert after[d.ifindex] == rev
