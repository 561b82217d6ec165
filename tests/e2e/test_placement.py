"""Balanced, sticky placement and one owner per IP in the lab, at the reference's timers.

Thirty Services on three nodes: after start-up no node holds more than 11 (ceil(30/3) + 1). Two
Services are then made to share one VIP: one lease (the group leader's) covers both. The agent
of the node holding the shared VIP is killed: its Services spread over the two others. It starts
again: it gets its share back by planned handovers, paced by the over-full holders. Through the
crash and the rejoin, the client asks for every VIP ten times a second, and no request is ever
answered by two MACs.

A fourth node joins a lab of three with the same 30 Services (``l2lab node add``): it gets its
share by planned handovers, no node ends over ceil(30/4) + 1, never two MACs for one request.

The largest share, the number of moves on rejoin (or join) and the client's longest gap are
printed for docs/benchmarks.md, not asserted beyond the bound.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter

import pytest

from common.leases import lease_name
from lab import lab
from lab.inventory import LabState
from tests.e2e import test_lab
from tests.e2e.lab_extras import arpwatch, holder_of, l2lab, summary, until
from tests.e2e.test_lab import REFERENCE, up

lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(420)

SERVICES = 30


def shares(state: LabState, alive: set[str]) -> Counter[str]:
    """Leases per node, counting only leases held by a node in ``alive``."""
    return Counter(h for h in lab.leases(state).values() if h in alive)


def settled(state: LabState, alive: set[str], units: int, bound: int) -> bool:
    held = shares(state, alive)
    return sum(held.values()) == units and max(held.values()) <= bound


@dataclasses.dataclass
class Moves:
    count: int = 0
    flows: Counter[str] = dataclasses.field(default_factory=Counter)
    """"from->to" per move."""
    last: float = 0.0
    """When the last move was seen (monotonic)."""


def follow_moves(
    state: LabState,
    seen: dict[str, str],
    alive: set[str],
    units: int,
    bound: int,
    newcomer: str,
    quiet: float,
    deadline: float,
) -> Moves:
    """Poll the holders every 0.3 s, counting each lease that changes holder, until every unit
    is held within ``bound``, ``newcomer`` holds some, and nothing moved for ``quiet`` seconds."""
    moves = Moves(last=time.monotonic())
    quiet_since = time.monotonic()
    while True:
        time.sleep(0.3)
        now = lab.leases(state)
        changed = [k for k in now if now[k] != seen.get(k) and now[k]]
        moves.count += len(changed)
        moves.flows.update(f"{seen.get(k) or '-'}->{now[k]}" for k in changed)
        if changed:
            quiet_since = moves.last = time.monotonic()
        seen = now
        if (
            time.monotonic() - quiet_since >= quiet
            and settled(state, alive, units, bound)
            and shares(state, alive)[newcomer] > 0
        ):
            return moves
        assert time.monotonic() < deadline, f"not steady with {newcomer}: {shares(state, alive)}"


def steady(state: LabState, alive: set[str], units: int, bound: int, quiet: float) -> None:
    """Until every unit is held by a live node within ``bound``, and no lease moved for
    ``quiet`` seconds (the paced handovers are over)."""
    last = lab.leases(state)
    since = time.monotonic()
    deadline = since + 120
    while True:
        time.sleep(0.5)
        now = lab.leases(state)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet and settled(state, alive, units, bound):
            return
        assert time.monotonic() < deadline, f"not steady: {shares(state, alive)}"


def test_balanced_sticky_placement_and_one_owner_per_ip(lab_name: str) -> None:
    state = up(lab_name, services=SERVICES, timers=REFERENCE, balance=True)
    nodes = set(state.node_names())
    retry = 2.0
    steady(state, nodes, SERVICES, math.ceil(SERVICES / 3) + 1, quiet=3 * retry)
    start_up = shares(state, nodes)
    print(f"after start-up: {dict(sorted(start_up.items()))}")
    assert max(start_up.values()) <= 11

    # service-2 takes service-1's VIP: both follow service-1's lease
    vips = state.vips()
    shared = vips["service-1"]
    print(l2lab(lab_name, "service", "service-2", "--ip", shared))
    state = LabState.load(lab_name) or state
    units = SERVICES - 1
    until(lambda: holder_of(state, "service-2") == "", "service-2's own lease let go", 30)
    owner = holder_of(state, "service-1")
    assert owner in nodes
    for node in nodes:
        announced = lab.node_view(state, node).announced
        assert (shared in announced) == (node == owner), (node, owner, announced)
    watched = sorted(set(state.vips().values()))
    assert len(watched) == units

    # the holder of the shared VIP crashes: its Services spread over the two others
    before = {k: h for k, h in lab.leases(state).items()}
    lost = {k for k, h in before.items() if h == owner}
    crash = arpwatch(state, watched, duration=45, interval=0.1)
    time.sleep(1)
    l2lab(lab_name, "agent", "kill", owner)
    alive = nodes - {owner}
    until(lambda: settled(state, alive, units, math.ceil(units / 2) + 1), "failover", 40)
    after_crash = shares(state, alive)
    took = Counter(lab.leases(state)[k] for k in lost)
    print(f"after killing {owner}: {dict(sorted(after_crash.items()))}, its leases went {took}")
    assert set(took) == alive, "spread over both others"
    crash.wait(timeout=60)  # its whole duration
    crashed = summary(crash)
    print(f"client during the crash: {crashed}")
    assert crashed["double"] == 0

    # it starts again: it gets its share back by planned handovers
    seen = lab.leases(state)
    rejoin = arpwatch(state, watched, duration=60, interval=0.1)
    time.sleep(1)
    t0 = time.monotonic()
    l2lab(lab_name, "agent", "start", owner)
    bound = math.ceil(units / 3) + 1
    moves = follow_moves(state, seen, nodes, units, bound, owner, 3 * retry, t0 + 55).count
    took_s = time.monotonic() - t0
    back = shares(state, nodes)
    rejoin.wait(timeout=90)  # its whole duration
    rejoined = summary(rejoin)
    print(
        f"after {owner} rejoined: {dict(sorted(back.items()))}, {moves} move(s) in {took_s:.1f}s; "
        f"client: {rejoined}"
    )
    assert max(back.values()) <= bound
    assert back[owner] >= math.floor(units / 3) - 1, "it got its share back"
    assert rejoined["double"] == 0, "never two MACs for one request"
    assert holder_of(state, "service-2") == "", "the group stays on one lease"
    assert lab.leases(state)[lease_name("default", "service-1")] in nodes


def test_a_fourth_node_joining_gets_its_share_by_planned_handovers(lab_name: str) -> None:
    """A node added to a running lab of three (``l2lab node add``) gets its share of the 30
    Services from the three holders, and the client never sees two MACs for one request."""
    state = up(lab_name, services=SERVICES, timers=REFERENCE)
    nodes = set(state.node_names())
    retry = 2.0
    steady(state, nodes, SERVICES, math.ceil(SERVICES / 3) + 1, quiet=3 * retry)
    before = lab.leases(state)
    print(f"three nodes: {dict(sorted(shares(state, nodes).items()))}")

    watched = sorted(set(state.vips().values()))
    watch = arpwatch(state, watched, duration=90, interval=0.1)
    time.sleep(1)
    t0 = time.monotonic()
    print(l2lab(lab_name, "node", "add"))
    added_s = time.monotonic() - t0
    state = LabState.load(lab_name) or state
    joined = set(state.node_names())
    new = f"node{len(nodes) + 1}"
    assert joined == nodes | {new}
    agent = state.node_states[new].agent
    assert agent is not None and agent.alive()

    bound = math.ceil(SERVICES / 4) + 1
    # the watcher runs until about t0 + 89
    seen = follow_moves(state, before, joined, SERVICES, bound, new, 3 * retry, t0 + 85)
    moves, flows, last_move = seen.count, seen.flows, seen.last
    after = lab.leases(state)
    net = sum(1 for k, h in after.items() if h != before.get(k))
    held = shares(state, joined)
    watch.wait(timeout=120)  # its whole duration
    client = summary(watch)
    print(
        f"after {new} joined: {dict(sorted(held.items()))}; `l2lab node add` took {added_s:.1f}s; "
        f"{moves} move(s) seen ({dict(sorted(flows.items()))}; {net} leases changed holder), "
        f"the last {last_move - t0:.1f}s after `node add` began; client: {client}"
    )
    assert client["double"] == 0, "never two MACs for one request"
    assert held[new] >= 1, f"{new} holds no lease"
    assert max(held.values()) <= bound, held
