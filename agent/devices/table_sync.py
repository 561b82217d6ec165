"""Writing the ``devices`` table from netlink updates: full listings and batches, one
transaction each. No threads and no sockets here, so the logic is tested step by step.

After a full listing the table holds exactly the listed devices; rows that did not change are
left alone (statedb skips identical upserts), so a relist after a netlink error does not make
every consumer see every device change. After a batch, selection is re-evaluated for the devices
the batch touched and for every unselected device, since a change elsewhere (a new route) can
make one eligible. ``Devices changed`` is logged whenever the set of selected names changes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

from agent.devices.netstate import NetState
from agent.devices.options import DevicesOptions
from agent.devices.selection import select_device
from agent.devices.source import Update
from common.tables.devices import DEVICES, Device
from statedb import Database, WriteTxn

log = logging.getLogger(__name__)

INITIALIZER = "devices-controller"


class DeviceTableSync:
    """Folds updates into a ``NetState`` and mirrors it, with selection, into ``devices``."""

    def __init__(
        self,
        db: Database,
        options: DevicesOptions,
        *,
        l3_devices_supported: bool = True,
        dead_link_retention: float = 300.0,
    ) -> None:
        self._db = db
        self._options = options
        self._l3 = l3_devices_supported
        self._retention = dead_link_retention
        self._state = NetState(dead_link_retention)
        self._rows: dict[int, Device] = {}  # what the table holds, as last committed

    @property
    def rows(self) -> dict[int, Device]:
        return dict(self._rows)

    def selected_names(self) -> list[str]:
        """Names of the selected devices in ifindex order (the order the announcer uses)."""
        return [r.name for i, r in sorted(self._rows.items()) if r.selected]

    def register_initializer(self) -> None:
        with self._db.write_txn(DEVICES) as txn:
            txn.register_initializer(DEVICES, INITIALIZER)

    def full_sync(self, updates: Iterable[Update], now: float) -> int:
        """Rebuild from a complete listing in one transaction; marks the table initialized.

        Returns the revision after the commit.
        """
        self._state = NetState(self._retention)
        for u in updates:
            self._state.apply(u, now)
        rows: dict[int, Device] = {}
        for i in self._state.ifindexes():
            row = self._evaluate(i)
            if row is not None:
                rows[i] = row
        before = self.selected_names()
        with self._db.write_txn(DEVICES) as txn:
            for old in txn.all(DEVICES):
                if old.ifindex not in rows:
                    txn.delete(DEVICES, old)
            for row in rows.values():
                txn.upsert(DEVICES, row)
            # Registering again is a no-op; it spares callers a failure if they skipped it.
            txn.register_initializer(DEVICES, INITIALIZER)
            txn.initializer_done(DEVICES, INITIALIZER)
            revision = txn.commit()
        self._rows = rows
        self._log_if_changed(before)
        return revision

    def apply_batch(self, updates: Iterable[Update], now: float) -> bool:
        """Apply a batch of changes in one transaction; False if no row changed."""
        touched = {i for u in updates if (i := self._state.apply(u, now)) is not None}
        self._state.expire_dead(now)
        candidates = touched | {i for i, row in self._rows.items() if not row.selected}
        upserts: dict[int, Device] = {}
        deletes: list[int] = []
        for i in sorted(candidates):
            row = self._evaluate(i)
            if row is None:
                if i in self._rows:
                    deletes.append(i)
            elif row != self._rows.get(i):
                upserts[i] = row
        if not upserts and not deletes:
            return False
        before = self.selected_names()
        with self._db.write_txn(DEVICES) as txn:
            self._write(txn, upserts, deletes)
        for i in deletes:
            del self._rows[i]
        self._rows.update(upserts)
        self._log_if_changed(before)
        return True

    @staticmethod
    def _write(txn: WriteTxn, upserts: dict[int, Device], deletes: list[int]) -> None:
        for i in deletes:
            txn.delete_key(DEVICES, i)
        for row in upserts.values():
            txn.upsert(DEVICES, row)

    def _evaluate(self, ifindex: int) -> Device | None:
        device = self._state.device(ifindex)
        if device is None:
            return None
        selected, reason = select_device(
            device,
            self._state.route_facts(ifindex),
            self._options,
            l3_devices_supported=self._l3,
        )
        return dataclasses.replace(device, selected=selected, not_selected_reason=reason)

    def _log_if_changed(self, before: list[str]) -> None:
        after = self.selected_names()
        if sorted(after) != sorted(before):
            log.info("Devices changed devices=[%s]", " ".join(after))


__all__ = ["INITIALIZER", "DeviceTableSync"]
