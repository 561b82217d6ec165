"""Keeps the responder right when an interface changes under an unchanged l2-announce row.

``l2-announce`` rows name interfaces, the BPF map keys carry ifindexes. When an interface is
deleted and created again (a new ifindex) or its MAC changes, the rows are the same but the keys
and the program's attachment are wrong. This watcher follows the devices table and, for each
interface whose ifindex or MAC changed, drops the responder's cached view of it and marks that
interface's rows Pending again (the reconciler re-adds the keys and announces the IP with a
gratuitous ARP, as for any new key), then asks for a prune, which removes the old ifindex's keys.
"""

from __future__ import annotations

import logging

from agent.changes_loop import ChangesLoop
from agent.responder.ops import ResponderOps
from agent.runtime import Clock
from common.tables.devices import DEVICES, Device
from common.tables.l2_announce import L2_ANNOUNCE, L2AnnounceEntry
from statedb import Change, Database, Status
from statedb.reconciler import Reconciler

log = logging.getLogger("l2announcer.l2-responder")


class DeviceSync(ChangesLoop[Device]):
    def __init__(
        self,
        db: Database,
        ops: ResponderOps,
        reconciler: Reconciler[L2AnnounceEntry],
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(db, DEVICES, "device-sync", clock=clock)
        self.ops = ops
        self.reconciler = reconciler
        self._seen: dict[str, tuple[int, str]] = {}  # name -> (ifindex, mac)

    def handle(self, changes: list[Change[Device]], first: bool) -> None:
        changed: set[str] = set()
        for ch in changes:
            name = ch.row.name
            if ch.deleted:
                if self._seen.get(name, (0, ""))[0] == ch.row.ifindex:
                    self._seen.pop(name, None)
                continue
            now = (ch.row.ifindex, ch.row.hw_addr)
            before = self._seen.get(name)
            self._seen[name] = now
            # The first batch is the listing: nothing changed yet. Later, a new ifindex or MAC
            # (also a name coming back after a delete) invalidates what the map has.
            if before != now and not first:
                changed.add(name)
        if changed:
            self.resync(changed)

    def resync(self, names: set[str]) -> None:
        log.info("interfaces changed under announced IPs, re-syncing: %s", ", ".join(sorted(names)))
        self.ops.forget_interfaces(names)
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            for row in txn.all(L2_ANNOUNCE):
                if row.network_interface in names:
                    txn.upsert(
                        L2_ANNOUNCE,
                        L2AnnounceEntry(
                            row.ip, row.network_interface, row.origins, Status.pending()
                        ),
                    )
        self.reconciler.trigger_prune()
