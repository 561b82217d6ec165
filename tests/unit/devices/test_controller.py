"""DevicesController with a fake netlink source: lifecycle, batching, relisting on errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.devices.controller import DevicesController, DevicesControllerConfig
from agent.devices.options import DevicesOptions
from common.tables.devices import DEVICES, Device
from statedb import Database

from .fake_netlink import FakeNetlink
from .helpers import addr, gone, route, uplink

FAST = DevicesControllerConfig(batch_interval=0.05, restart_delay=0.05, poll_interval=0.02)


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def names(db: Database) -> dict[str, Device]:
    with db.read_txn() as r:
        return {d.name: d for d in r.all(DEVICES)}


@pytest.fixture
def db() -> Iterator[Database]:
    d = Database.open(None, [DEVICES])
    yield d
    d.close()


@pytest.fixture
def net() -> FakeNetlink:
    return FakeNetlink(
        [
            *uplink(2, "eth0", "198.51.100.2", "198.51.100.0/24"),
            *uplink(3, "veth0", "203.0.113.2", "203.0.113.0/24", kind="veth"),
        ]
    )


@pytest.fixture
def started(db: Database, net: FakeNetlink) -> Iterator[DevicesController]:
    ctl = DevicesController(
        db, DevicesOptions(), config=FAST, source_factory=net.factory, l3_devices_supported=True
    )
    ctl.start()
    assert ctl.wait_initialized(3.0)
    yield ctl
    ctl.stop()


def test_start_lists_and_initializes_then_stop_joins_and_closes(
    db: Database, net: FakeNetlink
) -> None:
    threads = threading.active_count()
    ctl = DevicesController(db, config=FAST, source_factory=net.factory, l3_devices_supported=True)
    assert str(ctl.health.current()) == "Stopped"
    ctl.start()
    assert ctl.wait_initialized(3.0)
    assert set(names(db)) == {"eth0", "veth0"}
    eventually(lambda: str(ctl.health.current()).startswith("OK"))
    assert str(ctl.health.current()) == "OK: 2 devices, 1 selected (eth0)"
    assert [d.name for d in ctl.selected_devices()] == ["eth0"]
    with pytest.raises(RuntimeError):
        ctl.start()
    ctl.stop()
    assert threading.active_count() == threads
    assert net.opened == net.closed == 1
    assert str(ctl.health.current()) == "Stopped"
    ctl.stop()  # idempotent


def test_changes_within_the_window_are_one_transaction(
    db: Database, net: FakeNetlink, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = DevicesControllerConfig(batch_interval=0.3, restart_delay=0.05, poll_interval=0.02)
    ctl = DevicesController(db, config=cfg, source_factory=net.factory, l3_devices_supported=True)
    ctl.start()
    assert ctl.wait_initialized(3.0)
    writes: list[Any] = []
    real = db.write_txn

    def counting(*tables: Any) -> Any:
        writes.append(tables)
        return real(*tables)

    monkeypatch.setattr(db, "write_txn", counting)
    try:
        net.push(addr(2, "198.51.100.3"))
        time.sleep(0.05)
        net.push(route(3, "0.0.0.0/0", gw="203.0.113.1"))
        time.sleep(0.05)
        net.push(*uplink(4, "eth1", "192.0.2.4", "192.0.2.0/24"))
        eventually(lambda: "eth1" in names(db))
        got = names(db)
        assert got["veth0"].selected and got["eth1"].selected
        assert len(got["eth0"].addresses) == 2
        assert len(writes) == 1
    finally:
        ctl.stop()


def test_link_delete_then_late_messages(
    started: DevicesController, db: Database, net: FakeNetlink
) -> None:
    net.push(gone(3))
    eventually(lambda: "veth0" not in names(db))
    net.push(addr(3, "203.0.113.9"), route(3, "0.0.0.0/0", gw="203.0.113.1"))
    net.push(addr(2, "198.51.100.3"))  # a marker that the batch went through
    eventually(lambda: len(names(db)["eth0"].addresses) == 2)
    with db.read_txn() as r:
        assert r.get(DEVICES, 3) is None


def test_netlink_error_relists_from_scratch(
    started: DevicesController, db: Database, net: FakeNetlink
) -> None:
    # The kernel changed while events were being dropped.
    net.listing = [
        *uplink(2, "eth0", "198.51.100.2", "198.51.100.0/24"),
        *uplink(5, "eth5", "192.0.2.5", "192.0.2.0/24"),
    ]
    net.break_subscription()
    eventually(lambda: set(names(db)) == {"eth0", "eth5"})
    assert started.restarts == 1
    eventually(lambda: net.closed == 1 and net.opened == 2)
    eventually(lambda: str(started.health.current()).startswith("OK"))
    net.push(addr(5, "192.0.2.55"))  # the new subscription is followed
    eventually(lambda: len(names(db)["eth5"].addresses) == 2)


def test_health_is_degraded_while_netlink_fails(db: Database, net: FakeNetlink) -> None:
    cfg = DevicesControllerConfig(batch_interval=0.05, restart_delay=0.3, poll_interval=0.02)
    net.fail_open = 1
    ctl = DevicesController(db, config=cfg, source_factory=net.factory, l3_devices_supported=True)
    ctl.start()
    try:
        eventually(lambda: str(ctl.health.current()).startswith("Degraded"))
        assert "subscribe failed" in str(ctl.health.current()) and "relisting in 0.3s" in str(
            ctl.health.current()
        )
        assert not db.initialized(DEVICES)
        assert ctl.wait_initialized(3.0)
        eventually(lambda: str(ctl.health.current()).startswith("OK"))
    finally:
        ctl.stop()
    assert net.opened == 2 and net.closed == 1  # the failed open left nothing to close


def test_an_unexpected_failure_restarts_instead_of_killing_the_thread(
    started: DevicesController, db: Database, net: FakeNetlink
) -> None:
    net.break_subscription(RuntimeError("bug"))
    eventually(lambda: started.restarts == 1)
    eventually(lambda: str(started.health.current()).startswith("OK"))
    net.push(addr(2, "198.51.100.3"))
    eventually(lambda: len(names(db)["eth0"].addresses) == 2)


def test_stop_during_restart_delay_is_prompt(db: Database, net: FakeNetlink) -> None:
    cfg = DevicesControllerConfig(restart_delay=30.0, poll_interval=0.02)
    net.fail_open = 100
    ctl = DevicesController(db, config=cfg, source_factory=net.factory, l3_devices_supported=True)
    ctl.start()
    eventually(lambda: str(ctl.health.current()).startswith("Degraded"))
    t = time.monotonic()
    ctl.stop()
    assert time.monotonic() - t < cfg.restart_delay / 3, "stop waited for the restart delay"
