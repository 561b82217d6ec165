"""Lease economy mode in the multi-node simulator (sim_economy.py): O(nodes) writes in steady
state, failover after kills, partitions, freezes and stalled watches, clock drift within the
documented bound, and never two nodes answering for one Service."""

from __future__ import annotations

import pytest

from agent.leases.election import Timings
from agent.leases.heartbeat import CLOCK_DRIFT
from tests.unit.leases.sim_economy import EconomySim

DEFAULT = Timings(lease_duration=15.0, renew_deadline=5.0, retry_period=2.0)
FAST = Timings(lease_duration=3.0, renew_deadline=1.0, retry_period=0.4)


def _settled(sim: EconomySim) -> bool:
    return sim.answered() == len(sim.services)


def _holder_of(sim: EconomySim, service: str) -> list[str]:
    return sim.holders()[service]


def test_steady_state_writes_are_one_heartbeat_per_node_per_retry_period() -> None:
    sim = EconomySim(3, 30, DEFAULT, seed=1, tick=0.02)
    sim.run_until(lambda: _settled(sim), 10)
    sim.run(5)
    since = sim.now
    sim.run(60)
    rate = sim.writes_per_second(since)
    assert rate <= 3 / DEFAULT.retry_period * 1.02, rate
    assert rate >= 3 / DEFAULT.retry_period * 0.9, rate  # the heartbeats are renewed
    assert not [
        w for w in sim.server.writes if w[0] >= since and not w[1].startswith("l2announcer-node-")
    ]
    assert sim.overlaps == []
    assert all(len(v) == 1 for v in sim.holders().values())


def _first_holder(sim: EconomySim) -> str:
    return _holder_of(sim, sim.services[0])[0]


@pytest.mark.parametrize("seed", range(6))
def test_a_killed_holder_s_services_move_after_its_heartbeat_expires(seed: int) -> None:
    sim = EconomySim(3, 12, FAST, seed=seed, drift=CLOCK_DRIFT)
    sim.run_until(lambda: _settled(sim), 5)
    sim.run(2)
    victim = _first_holder(sim)
    moved = [s for s, who in sim.holders().items() if who == [victim]]
    sim.kill(victim)
    took = sim.run_until(
        lambda: all(who and victim not in who for s, who in sim.holders().items() if s in moved),
        3 * FAST.lease_duration,
    )
    # The heartbeat's duration (+ clock drift), a fence, the takeover's spread (at most a retry
    # period) and an acquisition: within per-service mode's bound (duration + 2 retry periods).
    bound = FAST.lease_duration * (1 + 2 * CLOCK_DRIFT) + FAST.retry_period + 4 * 0.03 + 0.1
    assert took <= bound, took
    assert sim.overlaps == []


@pytest.mark.parametrize("seed", range(6))
def test_a_partitioned_holder_goes_silent_before_anyone_takes_over(seed: int) -> None:
    sim = EconomySim(3, 12, FAST, seed=seed, drift=CLOCK_DRIFT)
    sim.run_until(lambda: _settled(sim), 5)
    sim.run(1)
    victim = _first_holder(sim)
    sim.partition(victim)
    sim.run_until(
        lambda: all(who and victim not in who for who in sim.holders().values()),
        3 * FAST.lease_duration,
    )
    sim.heal(victim)
    sim.run(3 * FAST.lease_duration)
    # Back in: its heartbeat (released by a fence) is taken again; it holds nothing it lost.
    assert sim.node(victim).heartbeat.leading
    assert sim.overlaps == []
    assert _settled(sim)


@pytest.mark.parametrize("seed", range(4))
def test_a_frozen_holder_is_silenced_by_its_datapath_then_rejoins(seed: int) -> None:
    sim = EconomySim(3, 9, FAST, seed=seed, drift=CLOCK_DRIFT)
    sim.run_until(lambda: _settled(sim), 5)
    sim.run(1)
    victim = _first_holder(sim)
    sim.freeze(victim)  # SIGSTOP: no step, the datapath answers until the stamp is too old
    sim.run(2 * FAST.lease_duration)
    assert all(who and victim not in who for who in sim.holders().values())
    sim.thaw(victim)
    sim.run(2 * FAST.lease_duration)
    assert sim.overlaps == []
    assert _settled(sim)


def test_a_follower_whose_watch_stalls_does_not_take_over_from_a_live_holder() -> None:
    sim = EconomySim(2, 6, FAST, seed=3)
    sim.run_until(lambda: _settled(sim), 5)
    sim.run(1)
    holder = _first_holder(sim)
    other = next(n for n in sim.nodes if n.name != holder)
    owned = {s for s, who in sim.holders().items() if who == [holder]}
    other.watch_stalled = True  # sees no renewal of the holder's heartbeat any more
    sim.run(5 * FAST.lease_duration)
    # It tried to fence the heartbeat, was refused (renewed since), asked, and waits again.
    assert {s for s, who in sim.holders().items() if who == [holder]} == owned
    assert sim.overlaps == []
    other.watch_stalled = False
    sim.run(FAST.lease_duration)
    assert sim.overlaps == []


def test_without_the_fence_a_stalled_watch_makes_two_nodes_answer() -> None:
    """The control: take an expired heartbeat as gone (no fence), and the previous test's
    follower takes the leases of a live holder."""
    from common.tables.node_liveness import Liveness

    sim = EconomySim(2, 6, FAST, seed=3)
    for n in sim.nodes:
        real = n.view.state

        def no_fence(node: str, now: float, real=real) -> Liveness | None:  # type: ignore[no-untyped-def]
            s = real(node, now)
            return Liveness.RELEASED if s is Liveness.EXPIRED else s

        n.view.state = no_fence  # type: ignore[method-assign]
    sim.run_until(lambda: _settled(sim), 5)
    sim.run(1)
    holder = _first_holder(sim)
    other = next(n for n in sim.nodes if n.name != holder)
    other.watch_stalled = True
    sim.run(3 * FAST.lease_duration)
    assert sim.overlaps, "no overlap: the scenario does not exercise the fence"


@pytest.mark.parametrize("gate", [True, False])
def test_a_wedged_elector_s_datapath_goes_silent_through_the_heartbeat_gate(gate: bool) -> None:
    """The elector's loop stuck, the stamper thread alive: the gate stops the stamps once the
    heartbeat is not renewed; without the gate (the control) the node answers on after another
    took its Services."""
    sim = EconomySim(2, 4, FAST, seed=5, drift=CLOCK_DRIFT)
    for n in sim.nodes:
        n.gate = gate
    sim.run_until(lambda: _settled(sim), 5)
    sim.run(1)
    victim = sim.node(_first_holder(sim))
    victim.wedged = True
    sim.run(3 * FAST.lease_duration)
    assert bool(sim.overlaps) is not gate
    assert _settled(sim)


@pytest.mark.parametrize("seed", range(10))
def test_random_faults_never_two_answers(seed: int) -> None:
    import random

    rng = random.Random(seed)
    sim = EconomySim(4, 8, FAST, seed=seed, drift=CLOCK_DRIFT)
    for n in sim.nodes:
        n.max_watch_lag = rng.uniform(0.01, 0.8)
    sim.max_latency = 0.2
    sim.run_until(lambda: _settled(sim), 10)
    for _ in range(12):
        victim = rng.choice(sim.nodes).name
        fault = rng.choice(["kill", "partition", "freeze", "stall", "wedge"])
        n = sim.node(victim)
        if fault == "kill":
            sim.kill(victim)
        elif fault == "partition":
            sim.partition(victim)
        elif fault == "freeze":
            sim.freeze(victim)
        elif fault == "wedge":
            n.wedged = True
        else:
            n.watch_stalled = True
        sim.run(rng.uniform(0.5, 2.5) * FAST.lease_duration)
        if fault == "kill":
            sim.restart(victim)
        elif fault == "partition":
            sim.heal(victim)
        elif fault == "freeze":
            sim.thaw(victim)
        elif fault == "wedge":
            sim.node(victim).wedged = False
        else:
            sim.node(victim).watch_stalled = False
        sim.run(rng.uniform(0.2, 1.5) * FAST.lease_duration)
    sim.run(3 * FAST.lease_duration)
    assert sim.overlaps == []
    assert _settled(sim)
