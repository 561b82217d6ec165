"""The ``conflicts`` module: runs the detector's rules (rules.py) on the wire.

Two jobs. ``conflicts-tables`` follows the change feeds of ``l2-announce`` (what we announce
where), ``devices`` (each interface's MAC) and ``leases`` (who the cluster thinks holds each
Service), woken by the commits, and hands the pairs to watch to the other. ``conflicts`` owns the detector and the
sockets: one :class:`ArpSocket` per interface that carries a watched pair, opened and closed as
the pairs change, and one ``select`` over them with a timeout that is the detector's next
deadline (a probe due, a conflict going quiet), so it sleeps when nothing is announced.

What the detector decides goes to the ``conflicts`` table (a row per foreign MAC, deleted when
the conflict is over), to ``reports`` (the Service's Warning Event and condition,
agent/conflicts/report.py) and to the metrics hooks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from agent.conflicts.rules import (
    Action,
    Clean,
    Cleared,
    Defend,
    Detector,
    Heard,
    Pair,
    Probe,
    Raised,
    Settings,
    Updated,
    announced_pairs,
    mac_text,
    parse_arp,
)
from agent.conflicts.wire import ArpSocket
from agent.runtime import Clock, Health, HealthReporter, Job, RealClock
from common.leases import lease_name
from common.tables.conflicts import CONFLICTS, Conflict
from common.tables.devices import DEVICES
from common.tables.l2_announce import L2_ANNOUNCE, Origin
from common.tables.leases import LEASES
from statedb import Consumer, Database

log = logging.getLogger("l2announcer.conflicts")

REOPEN_DELAY = 1.0
"""Seconds before opening an interface's socket again after it failed (the interface is being
renamed, or went away before the announcer noticed)."""


class Reports:
    """Where raised and cleared conflicts are told (the Service's Event and condition)."""

    def raised(self, row: Conflict) -> None: ...

    def cleared(self, row: Conflict, why: str) -> None: ...

    def clean(self, pair: Pair) -> None: ...


class ConflictMonitor:
    name = "conflicts"

    def __init__(
        self,
        db: Database,
        node: str,
        settings: Settings | None = None,
        *,
        reports: Reports | None = None,
        on_packet: Callable[[str, str], None] | None = None,
        on_defence: Callable[[str, str], None] | None = None,
        clock: Clock | None = None,
        open_socket: Callable[[str], ArpSocket] = ArpSocket,
    ) -> None:
        self.db = db
        self.node = node
        self.settings = settings or Settings()
        self.clock = clock or RealClock()
        self.detector = Detector(self.settings)
        self._reports = reports or Reports()
        self._on_packet = on_packet
        self._on_defence = on_defence
        self._open_socket = open_socket
        self._lock = threading.Lock()
        self._wanted: list[Pair] | None = None  # handed from the tables job, taken by the wire
        self._last_wanted: list[Pair] | None = None
        self._sockets: dict[str, ArpSocket] = {}
        self._filtered: dict[str, frozenset[str]] = {}  # interface -> the VIPs its filter keeps
        self._consumers: list[Consumer[Any]] = []
        self._failed: dict[str, tuple[float, str]] = {}  # interface -> (retry at, error)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.probes = 0
        self.packets = 0  # conflicting packets heard
        self.defences = 0
        self.health = HealthReporter(self.name, initial=Health.starting("not started"))
        self.tables_health = HealthReporter(
            "conflicts-tables", initial=Health.starting("not started")
        )
        self._tables_job = Job(
            "conflicts-tables", self._follow, wake=db.notify_waiters, health=self.tables_health
        )
        self._job = Job(self.name, self._serve, wake=self._wake, health=self.health)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._consumers = [
            self.db.register_consumer("conflicts:l2-announce", L2_ANNOUNCE),
            self.db.register_consumer("conflicts:leases", LEASES),
            self.db.register_consumer("conflicts:devices", DEVICES),
        ]
        self._job.start()
        self._tables_job.start()

    def stop(self) -> None:
        self._tables_job.stop()
        self._job.stop()
        for consumer in self._consumers:
            consumer.close()
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._filtered.clear()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        # Rows describe what this process saw; a stopped detector sees nothing.
        try:
            with self.db.write_txn(CONFLICTS) as txn:
                txn.delete_all(CONFLICTS)
        except Exception as e:  # stopping never raises; the next start recreates the table
            log.warning("conflict detection: clearing the conflicts table failed: %s", e)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # -- the tables job ------------------------------------------------------------------------

    def _follow(self, stopping: threading.Event) -> None:
        """Keep a view of the three tables from their change feeds, and hand the pairs over when
        they change. Every lease renewal in the cluster changes ``leases``: a batch costs only
        its own rows, and pairs are recomputed only when a holder, an entry or a MAC changed."""
        consumers = self._consumers
        assert consumers, "started without change consumers"
        entries: dict[tuple[str, str], tuple[Origin, ...]] = {}
        holders: dict[str, str] = {}  # lease name -> holder
        macs: dict[int, tuple[str, str]] = {}  # ifindex -> (name, MAC)
        self.tables_health.ok()
        while not stopping.is_set():
            changed = self._last_wanted is None
            for ch in consumers[0].changes():
                e = ch.row
                key = (e.ip, e.network_interface)
                if ch.deleted:
                    changed |= entries.pop(key, None) is not None
                elif entries.get(key) != e.origins:
                    entries[key], changed = e.origins, True
            for lc in consumers[1].changes():
                holder = "" if lc.deleted else lc.row.holder
                if holders.get(lc.row.name, "") != holder:
                    holders[lc.row.name], changed = holder, True
            for dc in consumers[2].changes():
                d = dc.row
                if dc.deleted:
                    changed |= macs.pop(d.ifindex, None) is not None
                elif macs.get(d.ifindex) != (d.name, d.hw_addr):
                    macs[d.ifindex], changed = (d.name, d.hw_addr), True
            if changed:
                self._hand_over(entries, holders, macs)
            self.db.wait_for_any(
                {c.table: c.revision for c in consumers}, None, until=stopping.is_set
            )

    def _hand_over(
        self,
        entries: dict[tuple[str, str], tuple[Origin, ...]],
        holders: dict[str, str],
        macs: dict[int, tuple[str, str]],
    ) -> None:
        rows = [
            (ip, iface, tuple(str(o) for o in origins)) for (ip, iface), origins in entries.items()
        ]
        service_holders = {
            str(o): holders.get(lease_name(o.namespace, o.name), "")
            for origins in entries.values()
            for o in origins
        }
        by_name = dict(macs.values())
        pairs = announced_pairs(rows, by_name, service_holders, self.node)
        if pairs != self._last_wanted:
            self._last_wanted = pairs
            with self._lock:
                self._wanted = pairs
            self._wake()

    # -- the wire job --------------------------------------------------------------------------

    def _serve(self, stopping: threading.Event) -> None:
        self.health.ok("watching no interface")
        while not stopping.is_set():
            with self._lock:
                wanted, self._wanted = self._wanted, None
            now, wall = self.clock.monotonic(), self.clock.now()
            if wanted is not None:
                self._open_sockets(_vips_by_interface(wanted), now)
                self._apply(self.detector.watch(wanted, now, wall))
            elif self._failed:
                self._open_sockets(_vips_by_interface(self.detector.pairs()), now)
            self._apply(self.detector.tick(now, wall))
            deadline = self.detector.next_deadline()
            retries = [at for at, _ in self._failed.values()]
            if retries:
                deadline = min([deadline, *retries] if deadline is not None else retries)
            timeout = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
            # Said before waiting, not only after: with nothing left to watch the wait has no
            # end, and a failure of a socket just closed must not stay on the health row.
            self._report_health()
            watched: list[Any] = [self._wake_r, *self._sockets.values()]
            readable, _, _ = select.select(watched, [], [], timeout)
            for r in readable:
                if r == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                else:
                    self._receive(r)
            self._report_health()

    def _receive(self, sock: ArpSocket) -> None:
        try:
            frames = sock.receive()
        except OSError as e:
            self._close(sock.ifname, f"receiving failed: {e}")
            return
        for frame in frames:
            pkt = parse_arp(frame)
            if pkt is None:
                continue
            now, wall = self.clock.monotonic(), self.clock.now()
            self._apply(self.detector.packet(sock.ifname, pkt, now, wall))

    def _open_sockets(self, vips: dict[str, frozenset[str]], now: float) -> None:
        """One socket per interface in ``vips``, each filtering on that interface's VIPs."""
        for name in [n for n in self._sockets if n not in vips]:
            self._sockets.pop(name).close()
            self._filtered.pop(name, None)
        for name in list(self._failed):
            if name not in vips:
                del self._failed[name]
        for name, sock in list(self._sockets.items()):
            if self._filtered.get(name) != vips[name]:
                try:
                    sock.set_vips(vips[name])
                except OSError as e:
                    self._close(name, f"setting its filter failed: {e}")
                else:
                    self._filtered[name] = vips[name]
        for name in sorted(set(vips) - set(self._sockets)):
            failed = self._failed.get(name)
            if failed is not None and now < failed[0]:
                continue
            try:
                self._sockets[name] = self._open_socket(name)
                self._sockets[name].set_vips(vips[name])
                self._filtered[name] = vips[name]
            except OSError as e:
                half_open = self._sockets.pop(name, None)
                if half_open is not None:
                    half_open.close()
                if failed is None:
                    log.warning("conflict detection on %s: cannot open an ARP socket: %s", name, e)
                self._failed[name] = (now + REOPEN_DELAY, f"cannot open an ARP socket: {e}")
            else:
                self._failed.pop(name, None)
                log.info("conflict detection: watching ARP on %s", name)

    def _close(self, name: str, why: str) -> None:
        self._filtered.pop(name, None)
        sock = self._sockets.pop(name, None)
        if sock is not None:
            sock.close()
        log.warning("conflict detection on %s: %s; reopening", name, why)
        self._failed[name] = (self.clock.monotonic() + REOPEN_DELAY, why)

    def _send(self, action: Probe | Defend) -> bool:
        sock = self._sockets.get(action.interface)
        if sock is None:
            return False
        try:
            if isinstance(action, Probe):
                sock.send_probe(action.ip)
            else:
                sock.send_defence(action.ip)
        except OSError as e:
            self._close(action.interface, f"sending failed: {e}")
            return False
        return True

    def _apply(self, actions: list[Action]) -> None:
        writes: list[Conflict] = []
        deletes: list[Conflict] = []
        for a in actions:
            if isinstance(a, Probe):
                self.probes += self._send(a)
            elif isinstance(a, Defend):
                if self._send(a):
                    self.defences += 1
                    log.warning(
                        "conflict: defended %s on %s with a gratuitous ARP", a.ip, a.interface
                    )
                    if self._on_defence is not None:
                        self._on_defence(a.ip, a.interface)
            elif isinstance(a, Heard):
                self.packets += 1
                if self._on_packet is not None:
                    self._on_packet(a.ip, a.interface)
            elif isinstance(a, Clean):
                self._reports.clean(a.pair)
            elif isinstance(a, Raised):
                writes.append(a.row)
                log.warning(
                    "conflict: %s on %s is also answered by %s (this node answers from %s)",
                    a.row.ip,
                    a.row.network_interface,
                    a.row.foreign_mac,
                    a.row.our_mac,
                )
                self._reports.raised(a.row)
            elif isinstance(a, Updated):
                writes.append(a.row)
            elif isinstance(a, Cleared):
                deletes.append(a.row)
                log.info(
                    "conflict over: %s on %s, %s %s",
                    a.row.ip,
                    a.row.network_interface,
                    a.row.foreign_mac,
                    a.why,
                )
                self._reports.cleared(a.row, a.why)
        if writes or deletes:
            with self.db.write_txn(CONFLICTS) as txn:
                for row in deletes:
                    txn.delete(CONFLICTS, row)
                for row in writes:
                    txn.upsert(CONFLICTS, row)

    def _report_health(self) -> None:
        if self._failed:
            self.health.degraded(
                "; ".join(f"{n}: {why}" for n, (_, why) in sorted(self._failed.items()))
            )
            return
        names = sorted(self._sockets)
        conflicts = len(self.detector.conflicts())
        text = f"watching ARP on {', '.join(names)}" if names else "watching no interface"
        self.health.ok(f"{text}; {conflicts} conflict(s)" if conflicts else text)


def _vips_by_interface(pairs: list[Pair]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for p in pairs:
        out.setdefault(p.interface, set()).add(p.ip)
    return {name: frozenset(ips) for name, ips in out.items()}


def describe(row: Conflict) -> str:
    """``198.51.100.20 on eth0 is also answered by 02:00:00:00:00:99 (this node: 02:...)``."""
    return (
        f"{row.ip} on {row.network_interface} is also answered by {row.foreign_mac} "
        f"(this node answers from {row.our_mac or 'an unknown MAC'})"
    )


__all__ = ["ConflictMonitor", "Reports", "describe", "mac_text"]
