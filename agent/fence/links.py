"""The link fence: interfaces that could carry announcements but cannot now, in ``l2-fence``.

A node whose announcing interface is down or has lost its carrier still renews its leases when it
reaches the API server another way (a management NIC), and nobody answers for its VIPs: the lease
says who *should* answer, not who *can*. This module turns the ``devices`` table into ``link``
rows of ``l2-fence``, which the fence gate reads, so such a node releases (the planned handover)
and does not contest again while it cannot serve.

    devices (netlink flags) --> LinkFences (pure: which interfaces, which state, hold-down)
                            --> LinkFenceWatcher (job: writes the diff of ``link`` rows)

Which interfaces: those selected now, those seen selected before (while this agent ran), and
those that would be selected if they were up (a restart while the uplink is down must not make
the node campaign for Services it cannot serve). Device selection itself is unchanged: a down
device is not selected, as before, and this module only adds why the node stays out.

The hold-down: an interface that comes back (up and with carrier) keeps its row for
``hold_down`` seconds (``LINK_HOLD_DOWN``), and a flap within it starts it again, so a bouncing
link does not make the node campaign and release in step with it. The node then contests again;
a lease another node took meanwhile stays there (leases are sticky), so nothing moves back.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from agent.devices.options import DevicesOptions
from agent.devices.selection import IFF_UP, RouteFacts, select_device
from agent.logfmt import fields
from agent.runtime import Clock, Health, HealthReporter, Job, RealClock
from common.tables.devices import DEVICES, Device
from common.tables.fence import L2_FENCE, REASON_INTERFACE_DOWN, Fence, FenceKind
from statedb import Database

log = logging.getLogger("l2announcer.fence")

IFF_RUNNING = 0x40  # the operational state is up: the link has carrier (RFC 2863 "up")

LINK_HOLD_DOWN = 5.0
"""Seconds an interface must stay up with carrier before the node contests on it again. Longer
than a link's usual bounce (a switch port renegotiating, a cable reseated), short against the
time an operator waits after fixing a link; a Service that moved meanwhile stays where it is."""

IDLE_WAKE = 5.0
"""Seconds between two looks when nothing changes: commits and hold-down ends wake the loop."""

INITIALIZER = "link-fence"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


@dataclass
class _Down:
    """An interface that went bad: since when, why, and when it came back (if it has)."""

    cause: str  # "down" or "no carrier"
    since: float  # monotonic
    since_wall: float
    back: float | None = None  # monotonic, when up with carrier again
    back_wall: float = 0.0
    flaps: int = 0  # how often it came back and went bad again while held down


def link_problem(d: Device) -> str:
    """Why ``d`` cannot carry traffic now ("down", "no carrier"), or "" when it can."""
    if not d.raw_flags & IFF_UP:
        return "down"
    if not d.raw_flags & IFF_RUNNING:
        return "no carrier"
    return ""


class LinkFences:
    """The pure part: from the rows of ``devices`` at a time, the ``link`` rows of ``l2-fence``."""

    def __init__(
        self,
        options: DevicesOptions | None = None,
        *,
        hold_down: float = LINK_HOLD_DOWN,
        l3_devices_supported: bool = True,
    ) -> None:
        if hold_down < 0:
            raise ValueError(f"hold_down must be >= 0 seconds, got {hold_down}")
        self.hold_down = hold_down
        self._options = options or DevicesOptions()
        self._l3 = l3_devices_supported
        self._uplinks: set[str] = set()  # names seen selected while this agent ran
        self._down: dict[str, _Down] = {}

    def _uplink(self, d: Device) -> bool:
        if d.selected or d.name in self._uplinks:
            return True
        # Would it be selected if it were up? Its routes went with the link (the kernel flushes
        # them but the local table's, which keeps a global unicast one), so only the rules on
        # name, type and flags are left to ask. A veth counts only once seen selected: without
        # its default route nothing tells an uplink from container plumbing or a management link.
        up = dataclasses.replace(d, raw_flags=d.raw_flags | IFF_UP | IFF_RUNNING)
        selected, _ = select_device(
            up, RouteFacts(False, True), self._options, l3_devices_supported=self._l3
        )
        return selected

    def observe(self, devices: Iterable[Device], now: float, wall: float) -> dict[str, Fence]:
        """The ``link`` rows (by interface name) for ``devices`` as they are at ``now``
        (monotonic; ``wall`` for display)."""
        seen: set[str] = set()
        for d in devices:
            if not d.name:
                continue
            seen.add(d.name)
            if d.selected:
                self._uplinks.add(d.name)
            problem = link_problem(d)
            state = self._down.get(d.name)
            if problem:
                if state is None:
                    if self._uplink(d):
                        self._down[d.name] = _Down(problem, now, wall)
                        log.warning(
                            "Interface cannot carry announcements: not contesting on it",
                            extra=fields(interface=d.name, state=problem),
                        )
                elif state.back is not None:  # bad again during its hold-down: start over
                    state.cause, state.back, state.flaps = problem, None, state.flaps + 1
                else:
                    state.cause = problem
            elif state is not None:
                if state.back is None:
                    state.back, state.back_wall = now, wall
                    log.info(
                        "Interface is back: contesting on it again after the hold-down",
                        extra=fields(interface=d.name, hold_down=f"{self.hold_down:g}s"),
                    )
                if now - state.back >= self.hold_down:
                    del self._down[d.name]
        for name in [n for n in self._down if n not in seen]:
            del self._down[name]  # the device is gone: nothing left to fence
        self._uplinks &= seen
        return {name: self._row(name, s) for name, s in self._down.items()}

    def next_deadline(self) -> float | None:
        """The monotonic time when the next hold-down ends, or None."""
        ends = [s.back + self.hold_down for s in self._down.values() if s.back is not None]
        return min(ends) if ends else None

    def _row(self, name: str, s: _Down) -> Fence:
        flaps = f", bounced {s.flaps} time(s)" if s.flaps else ""
        if s.back is None:
            state = "has no carrier" if s.cause == "no carrier" else f"is {s.cause}"
            detail = f"{name} {state} since {_clock(s.since_wall)}{flaps}"
            until = 0.0
        else:
            until = s.back_wall + self.hold_down
            detail = (
                f"{name} is up with carrier again since {_clock(s.back_wall)}{flaps}; "
                f"contesting again after the {self.hold_down:g}s hold-down"
            )
        return Fence(
            interface=name,
            kind=FenceKind.LINK,
            reason=REASON_INTERFACE_DOWN,
            detail=detail,
            since=s.since_wall,
            until=until,
        )


class LinkFenceWatcher:
    """Keeps the ``link`` rows of ``l2-fence`` in step with ``devices``; marks ``l2-fence``
    initialized after its first pass over an initialized ``devices`` table."""

    def __init__(
        self,
        db: Database,
        fences: LinkFences | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.name = "link-fence"
        self.db = db
        self.fences = fences or LinkFences()
        self.clock = clock or RealClock()
        self.initialized = False
        self.health = HealthReporter(self.name, initial=Health.starting("waiting for devices"))
        self._job = Job(self.name, self._run, wake=db.notify_waiters, health=self.health)

    def start(self) -> None:
        self.open_feeds()
        self._job.start()

    def open_feeds(self) -> None:
        """What ``start`` does before the loop runs: claim l2-fence's initialization and follow
        ``devices``. Tests call it, then ``run_once`` on their own thread, with virtual time."""
        with self.db.write_txn(L2_FENCE) as txn:
            txn.register_initializer(L2_FENCE, INITIALIZER)
            txn.commit()
        self._consumer = self.db.register_consumer(self.name, DEVICES)

    def stop(self) -> None:
        self._job.stop()
        self._consumer.close()

    def run_once(self) -> None:
        """One pass: read ``devices``, write the ``link`` rows that changed."""
        with self.db.read_txn() as r:
            if not r.initialized(DEVICES):
                return
            devices = r.all(DEVICES)
        rows = self.fences.observe(devices, self.clock.monotonic(), self.clock.now())
        with self.db.write_txn(L2_FENCE) as txn:
            for old in txn.all(L2_FENCE):
                if old.kind == FenceKind.LINK and old.interface not in rows:
                    txn.delete(L2_FENCE, old)
            for row in rows.values():
                txn.upsert(L2_FENCE, row)  # an identical row is left alone
            if not self.initialized:
                txn.initializer_done(L2_FENCE, INITIALIZER)
            txn.commit()
        self.initialized = True
        if rows:
            self.health.ok(f"not contesting on {', '.join(sorted(rows))}")
        else:
            self.health.ok("every interface can carry announcements")

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self._consumer.changes()  # only a wake-up: every pass reads the whole table
            self.run_once()
            timeout = IDLE_WAKE
            deadline = self.fences.next_deadline()
            if deadline is not None:
                left = self.clock.real_timeout(deadline - self.clock.monotonic())
                if left is not None:
                    timeout = min(timeout, max(left, 0.0) + 0.01)
            self._consumer.wait(timeout=timeout, until=stopping.is_set)


__all__ = [
    "IFF_RUNNING",
    "LINK_HOLD_DOWN",
    "LinkFenceWatcher",
    "LinkFences",
    "link_problem",
]
