"""The responder's verifier: what the l2-responder wrote is read back from the kernel, and what
went missing is restored, or the node fences itself.

The reconciler acts on changes of ``l2-announce``; once a row is Done it does not look again. But
the kernel state can change behind its back: someone deletes the map entry (``bpftool map
delete``, a cleanup script, another agent's prune of a shared map), or removes this agent's tc
filter from an interface (``tc filter del``, a CNI reinstalling its own programs). The lease
still looks healthy while nobody answers for the VIP. So every ``interval`` seconds the verifier
checks each Done row against the kernel:

- the responder entry is still in the map (read-back), and
- this agent's program is still attached to the row's interface.

What an operator wants is the VIP answered, preferably where it is: a one-off removal is
*repaired* in place (the row goes back to Pending; the reconciler re-adds the entry or
re-attaches the program, and announces the VIP with a gratuitous ARP as for any new entry), and
logged as a warning naming what was lost. The node *fences* itself (a ``datapath`` row in
``l2-fence``; the fence gate then refuses the Service, and the lease is handed over to a node
that can answer) only when

- the repair fails: the entry or program is still missing ``repair_grace`` seconds after the
  repair was asked for (the row shows the reconciler's error meanwhile), or it could not be
  programmed in the first place (a new holder whose row stays in Error with nothing in the
  kernel: the lease taken, nothing answered), or
- it keeps happening: more than ``repair_limit`` repairs of the same entry or interface within
  ``repair_window`` seconds, i.e. something keeps removing it, and every repair leaves a gap.

A fence lasts ``hold_down`` seconds; then the node contests again (a lease another node took
meanwhile stays there), and a new failure fences it again at once while the repairs are still
within the window.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agent.logfmt import fields
from agent.responder.ops import ResponderOps
from agent.runtime import Clock, Health, HealthReporter, Job, RealClock
from common.tables.devices import DEVICES
from common.tables.fence import L2_FENCE, REASON_DATAPATH_FAILED, Fence, FenceKind
from common.tables.l2_announce import L2_ANNOUNCE, L2AnnounceEntry
from statedb import Database, Status
from statedb.status import StatusKind

log = logging.getLogger("l2announcer.l2-responder")

VERIFY_INTERVAL = 1.0
"""Seconds between two read-backs: a lost entry is found (and repaired) within about this long.
One map dump and one filter listing per announcing interface each time."""
REPAIR_GRACE = 2.0
"""Seconds a repair may take before the node fences: the reconciler retries a failed write
after 0.1, 0.2, 0.4, 0.8 s, so a transient failure heals well within it."""
REPAIR_LIMIT = 3
"""Repairs of one entry or interface within ``REPAIR_WINDOW`` that are tolerated; one more
fences the node."""
REPAIR_WINDOW = 60.0
"""Seconds over which repairs are counted."""
DATAPATH_HOLD_DOWN = 30.0
"""Seconds a datapath fence lasts. The node cannot test a fix without the lease, so it tries
again after this long, as a standby."""

_WHOLE = ""  # the ``ip`` of an interface-wide key: the program, not one entry


@dataclass
class _Trouble:
    """The history of one entry (ip, interface) or interface (_WHOLE, interface)."""

    repairs: list[float] = field(default_factory=list)  # monotonic times
    repairing_since: float | None = None
    fenced_until: float | None = None  # monotonic
    fenced_at: float = 0.0  # wall clock, for the row
    detail: str = ""


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _what(key: tuple[str, str]) -> str:
    ip, iface = key
    return f"the program on {iface}" if ip == _WHOLE else f"the responder entry {ip}@{iface}"


class DatapathVerifier:
    def __init__(
        self,
        db: Database,
        ops: ResponderOps,
        attached_among: Callable[[Iterable[int]], set[int]],
        *,
        clock: Clock | None = None,
        interval: float = VERIFY_INTERVAL,
        repair_grace: float = REPAIR_GRACE,
        repair_limit: int = REPAIR_LIMIT,
        repair_window: float = REPAIR_WINDOW,
        hold_down: float = DATAPATH_HOLD_DOWN,
    ) -> None:
        self.name = "datapath-verifier"
        self.db = db
        self.ops = ops
        self.attached_among = attached_among
        self.clock = clock or RealClock()
        self.interval = interval
        self.repair_grace = repair_grace
        self.repair_limit = repair_limit
        self.repair_window = repair_window
        self.hold_down = hold_down
        self.repairs = 0  # in total, for tests and the health message
        self._trouble: dict[tuple[str, str], _Trouble] = {}
        self._written: dict[tuple[str, str], Fence] | None = None  # datapath rows last written
        self.health = HealthReporter(self.name, initial=Health.starting("first read-back"))
        self._job = Job(self.name, self._run, health=self.health)

    def start(self) -> None:
        self._job.start()

    def stop(self) -> None:
        self._job.stop()

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.wait(self.interval):
            self.verify_once()

    # -- one pass -------------------------------------------------------------------------------

    def verify_once(self) -> None:
        now = self.clock.monotonic()
        with self.db.read_txn() as r:
            rows = r.all(L2_ANNOUNCE)
            ifindex = {d.name: d.ifindex for d in r.all(DEVICES)}
        checked = [
            (row, ifindex[row.network_interface])
            for row in rows
            if row.status.kind in (StatusKind.DONE, StatusKind.ERROR)
            and row.network_interface in ifindex
        ]
        keys = set(self.ops.map.keys())
        parsed: set[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] | None = None
        attached = self.attached_among({i for _row, i in checked}) if checked else set()

        def missing(row: L2AnnounceEntry, idx: int) -> tuple[str, str] | None:
            """What of ``row`` the kernel lacks: its interface's program, its entry, or None."""
            nonlocal parsed
            if idx not in attached:
                return (_WHOLE, row.network_interface)
            if (row.ip, idx) in keys:
                return None
            # The map gives addresses back in canonical text; compare as addresses before
            # calling one missing (parsed once, and only then: rows are canonical already).
            if parsed is None:
                parsed = {(ipaddress.ip_address(ip), i) for ip, i in keys}
            if (ipaddress.ip_address(row.ip), idx) in parsed:
                return None
            return (row.ip, row.network_interface)

        lost: dict[tuple[str, str], list[L2AnnounceEntry]] = {}
        for row, idx in checked:
            key = missing(row, idx)
            if row.status.kind is StatusKind.ERROR:
                # Never programmed, or not again: the reconciler retries it by itself, and the
                # node fences when that has not worked within the grace (a row in Error whose
                # entry is there, e.g. after a failed gratuitous ARP, is answered: left alone).
                if key is not None:
                    t = self._trouble.setdefault(key, _Trouble())
                    if t.repairing_since is None:
                        t.repairing_since = now
            elif key is not None:
                lost.setdefault(key, []).append(row)
            else:
                self._fine((row.ip, row.network_interface))
                self._fine((_WHOLE, row.network_interface))
        if lost:
            self._repair(lost, now)
        self._still_missing(rows, now)
        self._write_fences(now)

    def _fine(self, key: tuple[str, str]) -> None:
        t = self._trouble.get(key)
        if t is not None and t.repairing_since is not None:
            t.repairing_since = None
            log.info("Restored what was missing from the kernel", extra=fields(what=_what(key)))

    def _repair(self, lost: dict[tuple[str, str], list[L2AnnounceEntry]], now: float) -> None:
        wall = self.clock.now()
        for key in lost:
            t = self._trouble.setdefault(key, _Trouble())
            t.repairs = [x for x in t.repairs if now - x < self.repair_window] + [now]
            t.repairing_since = now if t.repairing_since is None else t.repairing_since
            self.repairs += 1
            log.warning(
                "Missing from the kernel (removed behind the agent's back?): restoring it",
                extra=fields(
                    what=_what(key), repairs=f"{len(t.repairs)} in {self.repair_window:g}s"
                ),
            )
            if len(t.repairs) > self.repair_limit and t.fenced_until is None:
                self._fence(
                    key,
                    t,
                    now,
                    f"{_what(key)} went missing {len(t.repairs)} times within "
                    f"{self.repair_window:g}s (last at {_clock(wall)}): something keeps removing it",
                )
        # Before the rows go back to Pending: the reconciler must attach afresh, not trust what
        # it remembers attaching (and this takes the responder's lock, never inside a write).
        self.ops.forget_interfaces({iface for (ip, iface) in lost if ip == _WHOLE})
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            for rows in lost.values():
                for row in rows:
                    if txn.get(L2_ANNOUNCE, row.ip, row.network_interface) != row:
                        continue  # changed since it was read: the reconciler acts on it anyway
                    txn.upsert(
                        L2_ANNOUNCE,
                        L2AnnounceEntry(
                            row.ip, row.network_interface, row.origins, Status.pending()
                        ),
                    )
            txn.commit()

    def _still_missing(self, rows: list[L2AnnounceEntry], now: float) -> None:
        """A repair asked for (or a row failing to be programmed) more than ``repair_grace`` ago
        and not confirmed since: fence."""
        status = {(r.ip, r.network_interface): r.status for r in rows}
        for key, t in self._trouble.items():
            if t.repairing_since is None or t.fenced_until is not None:
                continue
            ip, iface = key
            if not any(ri == iface and ip in (_WHOLE, rip) for rip, ri in status):
                t.repairing_since = None  # nothing to answer for there any more (withdrawn)
                continue
            if now - t.repairing_since < self.repair_grace:
                continue
            errors = [
                s.error
                for (rip, riface), s in status.items()
                if riface == iface and (ip == _WHOLE or rip == ip) and s.kind is StatusKind.ERROR
            ]
            why = f": {errors[0]}" if errors else ""
            done = "restored" if t.repairs else "programmed"
            self._fence(
                key, t, now, f"{_what(key)} could not be {done} within {self.repair_grace:g}s{why}"
            )

    def _fence(self, key: tuple[str, str], t: _Trouble, now: float, detail: str) -> None:
        t.fenced_until = now + self.hold_down
        t.fenced_at = self.clock.now()
        t.detail = detail
        log.error(
            "Cannot answer there: not contesting the Services announced there",
            extra=fields(what=_what(key), reason=detail, hold_down=f"{self.hold_down:g}s"),
        )

    def _write_fences(self, now: float) -> None:
        for key, t in list(self._trouble.items()):
            if t.fenced_until is not None and now >= t.fenced_until:
                t.fenced_until = None
                t.repairing_since = None
                log.info("Datapath fence over: contesting again", extra=fields(what=_what(key)))
            t.repairs = [x for x in t.repairs if now - x < self.repair_window]
            if t.fenced_until is None and t.repairing_since is None and not t.repairs:
                del self._trouble[key]
        wanted = {
            key: Fence(
                interface=key[1],
                ip=key[0],
                kind=FenceKind.DATAPATH,
                reason=REASON_DATAPATH_FAILED,
                detail=t.detail,
                since=t.fenced_at,
                until=t.fenced_at + self.hold_down,
            )
            for key, t in self._trouble.items()
            if t.fenced_until is not None
        }
        # Written when it changes (and on the first pass: rows a previous agent left go).
        if self._written != wanted:
            with self.db.write_txn(L2_FENCE) as txn:
                for old in txn.all(L2_FENCE):
                    if old.kind == FenceKind.DATAPATH and (old.ip, old.interface) not in wanted:
                        txn.delete(L2_FENCE, old)
                for row in wanted.values():
                    txn.upsert(L2_FENCE, row)  # an identical row is left alone
                txn.commit()
            self._written = wanted
        fenced = sorted(f"{_what(k)}" for k in wanted)
        if fenced:
            self.health.degraded("fenced: " + "; ".join(fenced))
        else:
            self.health.ok(f"{self.repairs} repair(s) since start")


__all__ = [
    "DATAPATH_HOLD_DOWN",
    "REPAIR_GRACE",
    "REPAIR_LIMIT",
    "REPAIR_WINDOW",
    "VERIFY_INTERVAL",
    "DatapathVerifier",
]
