"""Node heartbeats: which agents are up, as this node sees it.

Every agent holds one Lease of its own, ``l2announcer-node-<node>`` in the agent namespace (the
elector renews it every retry period, in both lease modes, and releases it on a planned stop).
The leases reflector puts those rows in ``leases`` beside the Services' leases; this module judges
each the way the elector judges a Service's lease, on the local monotonic clock from when this
node saw the record change, never by its renewTime (the writer's wall clock):

- alive: seen changed within its ``leaseDurationSeconds``, and held by its node;
- expired: not seen changed for longer than that (the agent is down, or cannot reach the API);
- released: its agent stopped in order (empty holder), or another node marked it expired.

A heartbeat first seen at start-up counts from that moment, as a lease does: this node cannot
know how old it was, and counting it as fresh only delays a takeover, never speeds one up.

    leases (heartbeat rows) --> NodeLivenessView (pure: observations and time -> states)
                            --> NodeLivenessMonitor (job: writes ``l2-nodes``, wakes on expiries,
                                tells listeners which nodes changed state)
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.leases.record import LeaseRecord, record_from_row
from agent.runtime import Clock, Health, HealthReporter, Job, RealClock
from common.leases import heartbeat_node
from common.tables.leases import LEASES
from common.tables.node_liveness import L2_NODES, Liveness, NodeLiveness
from statedb import Database

log = logging.getLogger("l2announcer.leases")

IDLE_WAKE = 5.0
"""Seconds between two passes when nothing changes and nothing expires: a safety net only."""

INITIALIZER = "node-liveness"


@dataclass(slots=True)
class _Seen:
    record: LeaseRecord
    at: float  # monotonic, when this node saw the record change
    wall: float  # the same moment on the wall clock, for display


class NodeLivenessView:
    """The pure part: heartbeat observations and time in, each node's state out."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}

    def observe(self, node: str, record: LeaseRecord | None, now: float, wall: float) -> None:
        """What the watch says of ``node``'s heartbeat (None: there is none)."""
        if record is None:
            self._seen.pop(node, None)
            return
        old = self._seen.get(node)
        if old is not None:
            if _older(record, old.record):
                return  # a stale event behind what we already saw
            if record.same_record(old.record):
                old.record = record
                return
        self._seen[node] = _Seen(record, now, wall)

    def state(self, node: str, now: float) -> Liveness | None:
        """``node``'s heartbeat at ``now``; None when it has none (never started, or deleted)."""
        s = self._seen.get(node)
        if s is None:
            return None
        if s.record.holder != node:
            return Liveness.RELEASED
        if now < s.at + max(0, s.record.duration_seconds):
            return Liveness.ALIVE
        return Liveness.EXPIRED

    def record(self, node: str) -> LeaseRecord | None:
        s = self._seen.get(node)
        return None if s is None else s.record

    def expiry(self, node: str) -> float:
        """When (monotonic) ``node``'s heartbeat stops counting as alive unless seen renewed;
        -inf when it is not alive now, whatever the time."""
        s = self._seen.get(node)
        if s is None or s.record.holder != node:
            return -math.inf
        return s.at + max(0, s.record.duration_seconds)

    def next_change(self, now: float) -> float:
        """The next time a state changes with no new observation (inf: none)."""
        times = [t for n in self._seen if (t := self.expiry(n)) > now]
        return min(times, default=math.inf)

    def nodes(self) -> list[str]:
        return sorted(self._seen)

    def row(self, node: str, now: float) -> NodeLiveness | None:
        s = self._seen.get(node)
        state = self.state(node, now)
        if s is None or state is None:
            return None
        released = state == Liveness.RELEASED
        return NodeLiveness(
            node=node,
            state=state,
            renew_time=s.record.renew_time,
            duration_seconds=s.record.duration_seconds,
            observed=s.wall,
            expires=0.0 if released else s.wall + max(0, s.record.duration_seconds),
        )


def _older(a: LeaseRecord, b: LeaseRecord) -> bool:
    try:
        return int(a.resource_version) < int(b.resource_version)
    except ValueError:
        return False


OnNodes = Callable[[set[str]], None]


class NodeLivenessMonitor:
    """Keeps ``l2-nodes`` in step with the heartbeat rows of ``leases`` and with time; marks
    ``l2-nodes`` initialized after its first pass over an initialized ``leases`` table.

    ``state(node)`` answers from the same view, under a lock, for other modules (the elector in
    lease economy mode); listeners added with ``on_change`` learn which nodes changed state, from
    the monitor's thread."""

    def __init__(self, db: Database, *, clock: Clock | None = None) -> None:
        self.db = db
        self.clock: Clock = clock or RealClock()
        self.name = "node-liveness"
        self.health = HealthReporter(self.name)
        self.view = NodeLivenessView()
        self.initialized = False
        self._lock = threading.Lock()
        self._listeners: list[OnNodes] = []
        self._states: dict[str, Liveness] = {}
        self._job = Job(self.name, self._run, wake=db.notify_waiters, health=self.health)

    def on_change(self, listener: OnNodes) -> None:
        self._listeners.append(listener)

    def state(self, node: str) -> tuple[Liveness | None, LeaseRecord | None]:
        """``node``'s heartbeat state now and the record it was judged from."""
        with self._lock:
            return self.view.state(node, self.clock.monotonic()), self.view.record(node)

    def expiry(self, node: str) -> float:
        with self._lock:
            return self.view.expiry(node)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self.open_feeds()
        self._job.start()

    def open_feeds(self) -> None:
        """What ``start`` does before the loop runs (tests call it, then ``run_once``)."""
        with self.db.write_txn(L2_NODES) as txn:
            txn.register_initializer(L2_NODES, INITIALIZER)
            txn.commit()
        self._consumer = self.db.register_consumer(self.name, LEASES)

    def stop(self) -> None:
        self._job.stop()
        self._consumer.close()

    # -- the loop ------------------------------------------------------------------------------

    def run_once(self) -> None:
        """One pass: take the heartbeat changes, write the rows whose state changed."""
        with self.db.read_txn() as r:
            if not r.initialized(LEASES):
                return
        changes = self._consumer.changes()
        now, wall = self.clock.monotonic(), self.clock.now()
        with self._lock:
            for ch in changes:
                node = heartbeat_node(ch.row.name)
                if node is not None:
                    record = None if ch.deleted else record_from_row(ch.row)
                    self.view.observe(node, record, now, wall)
            rows = {n: row for n in self.view.nodes() if (row := self.view.row(n, now))}
            states = {n: Liveness(r.state) for n, r in rows.items()}
            moved = {
                n for n in set(states) | set(self._states) if states.get(n) != self._states.get(n)
            }
            self._states = states
        with self.db.write_txn(L2_NODES) as txn:
            for old in txn.all(L2_NODES):
                if old.node not in rows:
                    txn.delete(L2_NODES, old)
            for row in rows.values():
                txn.upsert(L2_NODES, row)  # an identical row is left alone
            if not self.initialized:
                txn.initializer_done(L2_NODES, INITIALIZER)
            txn.commit()
        self.initialized = True
        for n in sorted(moved):
            if n in states:
                log.info("Node heartbeat %s: %s", n, states[n].value)
            else:
                log.info("Node heartbeat %s: gone", n)
        if moved:
            for listener in self._listeners:
                try:
                    listener(moved)
                except Exception:
                    log.exception("node liveness listener failed")
        alive = sum(1 for s in states.values() if s == Liveness.ALIVE)
        self.health.set(Health.ok(f"{alive} of {len(states)} node heartbeat(s) alive"))

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self.run_once()
            timeout = IDLE_WAKE
            with self._lock:
                deadline = self.view.next_change(self.clock.monotonic())
            if deadline < math.inf:
                left = self.clock.real_timeout(deadline - self.clock.monotonic())
                if left is not None:
                    timeout = min(timeout, max(left, 0.0) + 0.01)
            self._consumer.wait(timeout=timeout, until=stopping.is_set)
