"""A discrete-time simulation of several nodes electing one Lease through a fake API server.

Time advances in fixed ticks. Requests take a random latency, are applied at the server halfway
through, and answer at the end; a partitioned node's requests never reach the server and fail at
their timeout, and its watch stalls (on heal it sees the current record). The watch delivers
every server change to each connected node after a random lag. A killed node stops at once, but
its datapath keeps answering until its liveness stamp is ``renew_deadline`` old (the max age):
that is when it stops "announcing" for the safety check.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

from agent.leases.election import LeaseElection, Outcome, Request, Timings
from agent.leases.record import LeaseRecord

WALL0 = 1_800_000_000.0


class Server:
    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.rv = 0
        self.writes: list[tuple[float, str]] = []  # (time, holder) of every successful write

    def apply(self, req: Request, now: float) -> Outcome:
        if req.kind == "get":
            return Outcome(self.record)
        assert req.record is not None
        if req.kind == "create":
            if self.record is not None:
                return Outcome(error="conflict", message="already exists")
        elif self.record is None:
            return Outcome(error="notfound", message="not found")
        elif req.record.resource_version != self.record.resource_version:
            return Outcome(error="conflict", message="the object has been modified")
        self.rv += 1
        self.record = dataclasses.replace(req.record, resource_version=str(self.rv))
        self.writes.append((now, self.record.holder))
        return Outcome(self.record)


@dataclass
class Node:
    name: str
    election: LeaseElection
    alive: bool = True
    partitioned: bool = False
    killed_at: float = math.inf
    announce_until: float = -math.inf  # a killed leader's datapath, until liveness runs out
    # (apply_at, answer_at, request, outcome or None until applied)
    pending: list[list[object]] = field(default_factory=list)
    watch: list[tuple[float, LeaseRecord | None]] = field(default_factory=list)
    requests: int = 0

    def announcing(self, now: float) -> bool:
        return (self.alive and self.election.leading) or now < self.announce_until


class Sim:
    def __init__(self, nodes: int, timings: Timings, seed: int = 0, tick: float = 0.01) -> None:
        self.rng = random.Random(seed)
        self.timings = timings
        self.tick = tick
        self.now = 0.0
        self.server = Server()
        self.nodes = [self._new_node(f"node{i + 1}") for i in range(nodes)]
        self.max_latency = 0.03
        self.max_watch_lag = 0.05
        self.overlaps: list[tuple[float, list[str]]] = []

    def _new_node(self, name: str) -> Node:
        e = LeaseElection("cilium-l2announce-default-svc", name, self.timings, self.rng.random)
        e.set_wanted(True)
        e.observe(self.server.record, self.now)
        return Node(name, e)

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def leaders(self) -> list[str]:
        return [n.name for n in self.nodes if n.announcing(self.now)]

    # -- faults -------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        n = self.node(name)
        if n.election.leading:
            n.announce_until = self.now + self.timings.renew_deadline
        n.alive = False
        n.killed_at = self.now
        n.pending.clear()
        n.watch.clear()

    def restart(self, name: str) -> None:
        i = next(i for i, n in enumerate(self.nodes) if n.name == name)
        old = self.nodes[i]
        fresh = self._new_node(name)
        fresh.announce_until = old.announce_until
        self.nodes[i] = fresh

    def partition(self, name: str) -> None:
        self.node(name).partitioned = True

    def heal(self, name: str) -> None:
        n = self.node(name)
        n.partitioned = False
        n.watch.append((self.now, self.server.record))

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
            if not n.alive:
                continue
            self._deliver(n)
            req = n.election.step(self.now, wall)
            if req is not None:
                n.requests += 1
                latency = self.rng.uniform(0.001, self.max_latency)
                n.pending.append([self.now + latency / 2, self.now + latency, req, None])
        leaders = self.leaders()
        if len(leaders) > 1:
            self.overlaps.append((self.now, leaders))

    def _deliver(self, n: Node) -> None:
        for item in list(n.pending):
            apply_at, answer_at, req, outcome = item
            assert isinstance(req, Request) and isinstance(apply_at, float)
            assert isinstance(answer_at, float)
            if n.partitioned:
                if self.now >= req.sent_at + req.timeout:
                    n.pending.remove(item)
                    n.election.complete(req, Outcome(error="other", message="timeout"), self.now)
                continue
            if outcome is None and self.now >= apply_at:
                before = self.server.record
                item[3] = outcome = self.server.apply(req, self.now)
                if self.server.record is not before:
                    self._broadcast()
            if outcome is not None and self.now >= answer_at:
                n.pending.remove(item)
                if self.now >= req.sent_at + req.timeout:
                    outcome = Outcome(error="other", message="timeout")
                assert isinstance(outcome, Outcome)
                n.election.complete(req, outcome, self.now)
        if not n.partitioned:
            for due, record in sorted(n.watch, key=lambda w: w[0]):
                if due <= self.now:
                    n.election.observe(record, self.now)
            n.watch = [w for w in n.watch if w[0] > self.now]

    def _broadcast(self) -> None:
        for n in self.nodes:
            if n.alive:
                n.watch.append(
                    (self.now + self.rng.uniform(0.001, self.max_watch_lag), self.server.record)
                )
