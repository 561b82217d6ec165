"""An interface re-created with a new ifindex moves its keys, without any l2-announce change."""

from __future__ import annotations

import time

from agent.responder.device_sync import DeviceSync
from agent.runtime.clock import RealClock
from common.tables import DEVICES, L2_ANNOUNCE
from common.tables.devices import Device
from common.tables.l2_announce import L2AnnounceEntry
from statedb.reconciler import Config
from tests.reconciler_job import JobReconciler
from tests.unit.responder.test_ops import Rig


def until(pred: object, timeout: float = 5.0) -> None:
    assert callable(pred)
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


def test_recreated_interface_gets_its_keys_back_and_an_announcement() -> None:
    rig = Rig()
    rec = JobReconciler(
        rig.db, L2_ANNOUNCE, rig.ops, Config(retry_min=0.01), clock=RealClock(), name="l2-responder"
    )
    sync = DeviceSync(rig.db, rig.ops, rec)
    rec.start()
    sync.start()
    try:
        with rig.db.write_txn(L2_ANNOUNCE) as txn:
            txn.register_initializer(L2_ANNOUNCE, "t")
            txn.upsert(L2_ANNOUNCE, L2AnnounceEntry("198.51.100.10", "eth0"))
            txn.initializer_done(L2_ANNOUNCE, "t")
        until(lambda: rig.map.keys() == [("198.51.100.10", 2)])
        # Address changes alone change nothing in the map.
        with rig.db.write_txn(DEVICES) as txn:
            txn.upsert(DEVICES, Device(2, "eth0", hw_addr="02:00:00:00:00:02", mtu=9000))
        time.sleep(0.2)
        assert rig.garp.sent == [("198.51.100.10", 2)]
        # eth0 deleted and created again: a new ifindex.
        with rig.db.write_txn(DEVICES) as txn:
            txn.delete_key(DEVICES, 2)
        with rig.db.write_txn(DEVICES) as txn:
            txn.upsert(DEVICES, Device(7, "eth0", hw_addr="02:00:00:00:00:07", selected=True))
        until(lambda: rig.map.keys() == [("198.51.100.10", 7)])
        assert rig.garp.sent == [("198.51.100.10", 2), ("198.51.100.10", 7)]
        assert "attach 7 020000000007" in rig.attacher.log
    finally:
        sync.stop()
        rec.stop(5)
        rig.db.close()
