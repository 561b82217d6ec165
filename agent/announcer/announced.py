"""Which Services this node really announces: those with at least one (IP, interface) pair
programmed, read from ``l2-announce`` as the l2-responder leaves it.

Holding a Service's lease is not announcing it: a policy whose interfaces match no device here,
or a Service with no valid IP, gives a held lease and nothing for ARP to answer. So the Service is
reported as announced from this node (the ``Announcing`` event on the Service,
agent/service_status.py) only once one of its pairs is in the BPF map: a row whose
reconcile status is Done. Without a datapath (``--no-datapath``, the control-plane tests) nothing
is ever reconciled, and a row in the table is as far as a pair gets, so a row counts.

The rows exist only while this node leads the Service (the announcer withdraws them when the
lease is lost), so "has a programmed pair" implies "holds the lease".
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.changes_loop import ChangesLoop
from agent.runtime import Clock
from common.tables.l2_announce import L2_ANNOUNCE, L2AnnounceEntry, Origin
from statedb import Change, Database, StatusKind

log = logging.getLogger("l2announcer.announcer")

Pair = tuple[str, str]  # (IP, interface)
OnAnnounced = Callable[[Origin, list[Pair]], None]


class AnnouncedServices(ChangesLoop[L2AnnounceEntry]):
    def __init__(
        self,
        db: Database,
        on_announced: OnAnnounced,
        reconciled: bool = True,
        *,
        clock: Clock | None = None,
    ) -> None:
        """``on_announced`` is called when a Service goes from no programmed pair to some;
        ``reconciled``: only rows the responder reconciled (Done) count as programmed."""
        super().__init__(db, L2_ANNOUNCE, "announced-services", clock=clock)
        self._on_announced = on_announced
        self._reconciled = reconciled
        self._rows: dict[Pair, L2AnnounceEntry] = {}
        self._announced: dict[Origin, list[Pair]] = {}

    def handle(self, changes: list[Change[L2AnnounceEntry]], first: bool) -> None:
        for ch in changes:
            key = (ch.row.ip, ch.row.network_interface)
            if ch.deleted:
                self._rows.pop(key, None)
            else:
                self._rows[key] = ch.row
        now: dict[Origin, list[Pair]] = {}
        for key, row in sorted(self._rows.items()):
            if self._reconciled and row.status.kind is not StatusKind.DONE:
                continue
            for origin in row.origins:
                now.setdefault(origin, []).append(key)
        new = sorted(o for o in now if o not in self._announced)
        self._announced = now
        for origin in new:
            try:
                self._on_announced(origin, now[origin])
            except Exception:  # one Service's report must not hide the others'
                log.exception("Reporting %s/%s as announced failed", origin.namespace, origin.name)

    def announced(self) -> dict[Origin, list[Pair]]:
        """Each Service with programmed pairs, and the pairs (as of the last batch)."""
        return dict(self._announced)
