"""Node heartbeats: which agents are up, as this node sees it.

Every agent in economy mode or with placement on holds one Lease of its own,
``l2announcer-node-<node>`` in the agent namespace; the elector renews it every retry period in
economy mode, three times per lease duration when only placement reads it
(``placement_heartbeat_timings``), and releases it on a planned stop.
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

In lease economy mode the elector keeps a ``NodeLivenessView`` of its own (fed the same rows, and
what its own requests show) and a ``Fencer`` (below) that marks an expired heartbeat released on
the server before any of that node's leases is taken over.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.leases.election import JITTER_FACTOR, Outcome, Request, Timings
from agent.leases.record import LeaseRecord, micro_time, record_from_row
from agent.runtime import Clock, Health, HealthReporter, Job, RealClock
from common.leases import heartbeat_node
from common.tables.leases import LEASES
from common.tables.node_liveness import L2_NODES, Liveness, NodeLiveness
from statedb import Database

log = logging.getLogger("l2announcer.leases")

IDLE_WAKE = 5.0
"""Seconds between two passes when nothing changes and nothing expires: a safety net only."""

INITIALIZER = "node-liveness"


def placement_heartbeat_timings(t: Timings) -> Timings:
    """The heartbeat's timings when only placement reads it (the per-service lease mode).

    There it says which agents are up, for spreading what is free or moving; no lease's safety
    rests on it. Renewed three times per lease duration (not every retry period): with the
    seed's fast timers (200 ms) every retry period would be 5 requests a second, the whole
    default client rate limit, and the Services' own renewals would wait behind it and miss
    their deadline. Economy mode keeps the Service timings: there the heartbeat vouches for
    every lease the node holds."""
    d = t.lease_duration
    if t.retry_period >= d / 3:
        return t
    return Timings(d, max(t.renew_deadline, 2 * d / 3), d / 3)


@dataclass(slots=True)
class _Seen:
    record: LeaseRecord
    at: float  # monotonic, when this node saw the record change
    wall: float  # the same moment on the wall clock, for display


class NodeLivenessView:
    """The pure part: heartbeat observations and time in, each node's state out."""

    def __init__(self) -> None:
        self._seen: dict[str, _Seen] = {}
        self._absent: set[str] = set()  # known to have no heartbeat (deleted, or not found)

    def observe(self, node: str, record: LeaseRecord | None, now: float, wall: float) -> None:
        """What the watch (or a request) says of ``node``'s heartbeat (None: there is none)."""
        if record is None:
            self._seen.pop(node, None)
            self._absent.add(node)
            return
        self._absent.discard(node)
        old = self._seen.get(node)
        if old is not None:
            if _older(record, old.record):
                return  # a stale event behind what we already saw
            if record.same_record(old.record):
                old.record = record
                return
        self._seen[node] = _Seen(record, now, wall)

    def state(self, node: str, now: float) -> Liveness | None:
        """``node``'s heartbeat at ``now``; None when it is known to have none (deleted, or not
        found when asked). A node never heard of counts as EXPIRED: nothing vouches for it, and
        whoever needs to know asks the server (the fence's GET) rather than assume it has none."""
        s = self._seen.get(node)
        if s is None:
            return None if node in self._absent else Liveness.EXPIRED
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

    def row(
        self, node: str, now: float, wall: float, old: NodeLiveness | None
    ) -> NodeLiveness | None:
        """``node``'s row at ``now``: ``old`` itself while its state and duration stand, so a
        renewal seen does not rewrite it (``since`` is when this node saw the state begin)."""
        s = self._seen.get(node)
        state = self.state(node, now)
        if s is None or state is None:
            return None
        duration = s.record.duration_seconds
        if old is not None and old.state == state and old.duration_seconds == duration:
            return old
        if state == Liveness.EXPIRED:
            since = wall - (now - self.expiry(node)) if self.expiry(node) > -math.inf else wall
        else:
            since = s.wall
        return NodeLiveness(node=node, state=state, duration_seconds=duration, since=since)


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
        self._rows: dict[str, NodeLiveness] = {}
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
            rows = {
                n: row
                for n in self.view.nodes()
                if (row := self.view.row(n, now, wall, self._rows.get(n)))
            }
            self._rows = rows
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


CLOCK_DRIFT = 0.01
"""The bound the economy mode's safety assumes on how far a node's monotonic clock may run fast
or slow against real time (a fraction: 1 %). NTP keeps it below 0.05 %; a VM's clock that stalls
or jumps is outside it (docs/leases.md)."""


def stamp_window(timings: Timings, drift: float = CLOCK_DRIFT) -> float:
    """Economy mode: the datapath may be stamped only while this node's last successful heartbeat
    renewal went out less than this long ago (its local clock). A stamp lets the datapath answer
    for one renew deadline more, so the last answer comes at most window + renew deadline after
    that renewal, which must be before any other node can take a lease over: a lease duration
    after seeing it, on a clock that may run ``drift`` slow while ours runs ``drift`` fast."""
    t = timings
    return min(t.renew_deadline, t.lease_duration * (1 - drift) / (1 + drift) - t.renew_deadline)


class Fencer:
    """Lease economy mode: before a follower takes over a Service lease whose holder's heartbeat
    expired in its view, it marks that heartbeat released on the server, with the resourceVersion
    it saw as precondition. The write fails (409) if the holder renewed since, which this node's
    watch may not have shown yet; it succeeds only if no renewal was committed after the one this
    node saw, so the holder stopped leading a renew deadline after sending that one, before this
    node's lease duration from seeing it ran out (docs/leases.md). One fence at a time per node,
    however many leases wait on it; a refused fence asks the server (GET) for the heartbeat first.

    Pure: the driver sends the requests, feeds outcomes back, and feeds what they show to its
    ``NodeLivenessView``."""

    def __init__(self, timings: Timings, rand: Callable[[], float]) -> None:
        self.timings = timings
        self._rand = rand
        self.in_flight: dict[str, Request] = {}
        self._stale: set[str] = set()  # refused: GET before fencing again
        self._not_before: dict[str, float] = {}

    def request(
        self, node: str, seen: LeaseRecord | None, now: float, wall: float
    ) -> Request | None:
        """The request that moves ``node``'s expired heartbeat on (None: one is in flight, or
        backing off, or there is nothing to fence)."""
        if node in self.in_flight or now < self._not_before.get(node, -math.inf):
            return None
        if node in self._stale:
            req = Request("get", "refresh", None, self.timings.retry_period, now)
        elif seen is None:
            # Never seen here (our watch has not shown it yet): ask whether there is one.
            req = Request("get", "refresh", None, self.timings.retry_period, now)
        elif seen.holder != node:
            return None  # released already: the leases can be taken
        else:
            stamp = micro_time(wall)
            fenced = LeaseRecord(
                "", 1, seen.acquire_time, stamp, seen.transitions, seen.resource_version
            )
            req = Request("update", "release", fenced, self.timings.retry_period, now)
        self.in_flight[node] = req
        return req

    def complete(self, node: str, req: Request, outcome: Outcome, now: float) -> bool:
        """The outcome of ``req``; True when ``outcome.record`` (or its absence on a 404) is
        what the server has now, for the driver's view."""
        if self.in_flight.get(node) is not req:
            return False
        del self.in_flight[node]
        if outcome.ok or outcome.error == "notfound":
            self._stale.discard(node)
            self._not_before.pop(node, None)
            return True
        if outcome.error == "conflict":
            self._stale.add(node)  # renewed (or changed) since we saw it: ask the server
        else:
            self._not_before[node] = now + self.timings.retry_period * (
                1 + self._rand() * JITTER_FACTOR
            )
        return False

    def retry_at(self, node: str) -> float:
        """When a backed-off fence of ``node`` may be retried (inf: it does not wait)."""
        return self._not_before.get(node, math.inf)

    def forget(self, node: str) -> None:
        self._stale.discard(node)
        self._not_before.pop(node, None)
