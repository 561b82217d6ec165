"""A discrete-time simulation of lease economy mode: several nodes, several Service leases and
one heartbeat lease per node, through a fake API server, with the elector's pure parts
(``LeaseElection`` with an economy view, ``NodeLivenessView``, ``Fencer``, ``stamp_window``)
glued as the elector glues them.

Faults: request latency and watch lag (random, per node bounds), partitions (requests time out,
the watch stalls; on heal the node sees every current record), clock drift (each node's
monotonic clock runs at its own rate within a bound), a wedged elector (its loop stuck, the
stamper thread running on: what the datapath's heartbeat gate is for), a stalled watch (the node's requests go
through but it sees no change: the case the heartbeat fence exists for), kills and freezes (a frozen agent takes no
step; a killed one is gone). The datapath of a node keeps answering for the Services it had
programmed until its last liveness stamp is ``renew_deadline`` old on its own clock; the stamper
runs every second while the agent runs and only while the heartbeat gate allows it.

Safety check on every tick: no Service is answered by two nodes.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

from agent.leases.election import LeaseElection, Outcome, Request, Timings
from agent.leases.heartbeat import Fencer, NodeLivenessView, stamp_window
from agent.leases.record import LeaseRecord
from common.leases import heartbeat_name, heartbeat_node, lease_name
from common.tables.node_liveness import Liveness

WALL0 = 1_800_000_000.0
STAMP_INTERVAL = 1.0


class Server:
    def __init__(self) -> None:
        self.records: dict[str, LeaseRecord] = {}
        self.rv = 0
        self.writes: list[tuple[float, str, str]] = []  # (time, name, holder)

    def apply(self, name: str, req: Request, now: float) -> Outcome:
        cur = self.records.get(name)
        if req.kind == "get":
            return Outcome(cur)
        assert req.record is not None
        if req.kind == "create":
            if cur is not None:
                return Outcome(error="conflict", message="already exists")
        elif cur is None:
            return Outcome(error="notfound", message="not found")
        elif req.record.resource_version != cur.resource_version:
            return Outcome(error="conflict", message="the object has been modified")
        self.rv += 1
        rec = self.records[name] = dataclasses.replace(req.record, resource_version=str(self.rv))
        self.writes.append((now, name, rec.holder))
        return Outcome(rec)


@dataclass
class Pending:
    name: str
    req: Request
    apply_at: float
    answer_at: float
    outcome: Outcome | None = None
    fence_of: str = ""


@dataclass
class Node:
    name: str
    rate: float  # local clock seconds per real second
    offset: float
    heartbeat: LeaseElection
    leases: dict[str, LeaseElection]
    view: NodeLivenessView
    fencer: Fencer
    alive: bool = True
    frozen: bool = False
    wedged: bool = False  # the elector's loop is stuck; the stamper thread still runs
    gate: bool = True  # the stamper asks the heartbeat gate (False: the control without it)
    partitioned: bool = False
    watch_stalled: bool = False  # requests go through, the watch delivers nothing
    max_watch_lag: float = 0.05
    pending: list[Pending] = field(default_factory=list)
    watch: list[tuple[float, str, LeaseRecord | None]] = field(default_factory=list)
    programmed: set[str] = field(default_factory=set)  # Services in the datapath
    last_stamp: float = -math.inf  # local clock
    next_stamp: float = 0.0  # local clock
    requests: int = 0

    def local(self, t: float) -> float:
        return self.offset + t * self.rate

    # EconomyView, at the node's current local time (set before each step)
    now: float = 0.0

    def own_alive(self) -> bool:
        return self.heartbeat.leading

    def holder_state(self, node: str) -> Liveness | None:
        return self.view.state(node, self.now)

    def answering(self, t: float) -> set[str]:
        if self.local(t) >= self.last_stamp + self.heartbeat.timings.renew_deadline:
            return set()
        return set(self.programmed)


class EconomySim:
    def __init__(
        self,
        nodes: int,
        services: int,
        timings: Timings,
        seed: int = 0,
        tick: float = 0.01,
        drift: float = 0.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.timings = timings
        self.tick = tick
        self.drift = drift
        self.now = 0.0
        self.server = Server()
        self.services = [lease_name("default", f"svc{i}") for i in range(services)]
        self.max_latency = 0.03
        self.nodes = [self._new_node(f"node{i + 1}") for i in range(nodes)]
        self.overlaps: list[tuple[float, str, list[str]]] = []

    def _new_node(self, name: str, clock: tuple[float, float] | None = None) -> Node:
        rate, offset = clock or (1 + self.rng.uniform(-self.drift, self.drift), 0.0)
        if clock is None:
            offset = self.rng.uniform(0, 1000)
        hb = LeaseElection(heartbeat_name(name), name, self.timings, self.rng.random)
        hb.stop_on_delete = True
        hb.set_wanted(True)
        leases = {}
        for s in self.services:
            e = LeaseElection(s, name, self.timings, self.rng.random)
            e.set_wanted(True)
            leases[s] = e
        n = Node(
            name,
            rate,
            offset,
            hb,
            leases,
            NodeLivenessView(),
            Fencer(self.timings, self.rng.random),
        )
        local = n.local(self.now)
        # As the agent does at start: it reads every lease from its (initialized) table.
        for rname, rec in self.server.records.items():
            self._observe(n, rname, rec, local)
        for rname in [hb.name, *self.services]:
            if rname not in self.server.records:
                self._observe(n, rname, None, local)
        return n

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def holders(self) -> dict[str, list[str]]:
        """Service -> the nodes answering for it now."""
        out: dict[str, list[str]] = {s: [] for s in self.services}
        for n in self.nodes:
            for s in n.answering(self.now):
                out[s].append(n.name)
        return out

    def answered(self) -> int:
        return sum(1 for v in self.holders().values() if v)

    def writes_per_second(self, since: float) -> float:
        n = sum(1 for t, _, _ in self.server.writes if t >= since)
        return n / max(self.now - since, 1e-9)

    # -- faults -------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        n = self.node(name)
        n.alive = False
        n.pending.clear()
        n.watch.clear()

    def freeze(self, name: str) -> None:
        self.node(name).frozen = True

    def thaw(self, name: str) -> None:
        self.node(name).frozen = False

    def restart(self, name: str) -> None:
        i = next(i for i, n in enumerate(self.nodes) if n.name == name)
        old = self.nodes[i]
        fresh = self._new_node(name, (old.rate, old.offset))  # the same host, the same clock
        fresh.programmed = set(old.programmed)  # the datapath is adopted with its keys
        fresh.last_stamp = old.last_stamp
        self.nodes[i] = fresh

    def partition(self, name: str) -> None:
        self.node(name).partitioned = True

    def heal(self, name: str) -> None:
        n = self.node(name)
        n.partitioned = False
        for rname, rec in self.server.records.items():
            n.watch.append((self.now, rname, rec))

    # -- time ---------------------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self._tick()

    def run_until(self, predicate: object, limit: float) -> float:
        assert callable(predicate)
        start = self.now
        while not predicate():
            if self.now - start > limit:
                raise AssertionError(f"not reached within {limit}s")
            self._tick()
        return self.now - start

    def _tick(self) -> None:
        self.now = round(self.now + self.tick, 9)
        wall = WALL0 + self.now
        for n in self.nodes:
            if not n.alive or n.frozen:
                continue
            self._deliver(n)
            self._step(n, wall)
        for s, who in self.holders().items():
            if len(who) > 1:
                self.overlaps.append((self.now, s, who))

    def _send(self, n: Node, name: str, req: Request, fence_of: str = "") -> None:
        n.requests += 1
        latency = self.rng.uniform(0.001, self.max_latency)
        n.pending.append(
            Pending(name, req, self.now + latency / 2, self.now + latency, None, fence_of)
        )

    def _step(self, n: Node, wall: float) -> None:
        local = n.local(self.now)
        n.now = local
        if n.wedged:
            self._stamp(n, local)
            return
        req = n.heartbeat.step(local, wall)
        if req is not None:
            self._send(n, n.heartbeat.name, req)
        blocked: set[str] = set()
        for name, e in n.leases.items():
            req = e.step(local, wall, n)
            if req is not None:
                self._send(n, name, req)
            if e.blocked_on:
                blocked.add(e.blocked_on)
            e.drain_events()
        n.heartbeat.drain_events()
        for node in sorted(blocked):
            fence = n.fencer.request(node, n.view.record(node), local, wall)
            if fence is not None:
                self._send(n, heartbeat_name(node), fence, fence_of=node)
        # The announcer programs what is led (and withdraws what is not) at once.
        n.programmed = {s for s, e in n.leases.items() if e.leading}
        self._stamp(n, local)

    def _stamp(self, n: Node, local: float) -> None:
        if local >= n.next_stamp:
            hb = n.heartbeat
            if not n.gate or (hb.leading and local < hb.last_renew + stamp_window(self.timings)):
                n.last_stamp = local
            n.next_stamp = local + STAMP_INTERVAL

    def _observe(self, n: Node, name: str, rec: LeaseRecord | None, local: float) -> None:
        if name == n.heartbeat.name:
            n.heartbeat.observe(rec, local)
        elif name in n.leases:
            n.leases[name].observe(rec, local)
        else:
            node = heartbeat_node(name)
            if node is not None:
                n.view.observe(node, rec, local, 0.0)

    def _complete(self, n: Node, p: Pending, outcome: Outcome) -> None:
        local = n.local(self.now)
        if p.fence_of:
            if n.fencer.complete(p.fence_of, p.req, outcome, local):
                n.view.observe(p.fence_of, outcome.record, local, 0.0)
            return
        e = n.heartbeat if p.name == n.heartbeat.name else n.leases[p.name]
        e.complete(p.req, outcome, local)

    def _deliver(self, n: Node) -> None:
        local = n.local(self.now)
        for p in list(n.pending):
            timed_out = local >= p.req.sent_at + p.req.timeout
            if n.partitioned:
                if timed_out:
                    n.pending.remove(p)
                    self._complete(n, p, Outcome(error="other", message="timeout"))
                continue
            if p.outcome is None and self.now >= p.apply_at:
                before = self.server.records.get(p.name)
                p.outcome = self.server.apply(p.name, p.req, self.now)
                after = self.server.records.get(p.name)
                if after is not before:
                    self._broadcast(p.name, after)
            if p.outcome is not None and self.now >= p.answer_at:
                n.pending.remove(p)
                outcome = p.outcome
                if timed_out:
                    outcome = Outcome(error="other", message="timeout")
                self._complete(n, p, outcome)
        if not n.partitioned and not n.watch_stalled:
            due = sorted((w for w in n.watch if w[0] <= self.now), key=lambda w: w[0])
            n.watch = [w for w in n.watch if w[0] > self.now]
            for _, name, rec in due:
                self._observe(n, name, rec, local)

    def _broadcast(self, name: str, rec: LeaseRecord | None) -> None:
        for n in self.nodes:
            if n.alive:
                # In order per node, as a watch delivers: never before an earlier event.
                last = max((w[0] for w in n.watch), default=self.now)
                due = max(last, self.now + self.rng.uniform(0.001, n.max_watch_lag))
                n.watch.append((due, name, rec))
