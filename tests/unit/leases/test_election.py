"""The election state machine, driven by simulated nodes against a fake API server."""

from __future__ import annotations

import pytest

from agent.leases.election import LeaseElection, Outcome, Timings
from agent.leases.record import LeaseRecord
from tests.unit.leases.sim import Sim

DEFAULT = Timings(15.0, 5.0, 2.0)
FAST = Timings(3.0, 1.0, 0.2)  # the seed's fast-failover example


def test_timings_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        Timings(5.0, 5.0, 2.0)
    with pytest.raises(ValueError):
        Timings(15.0, 2.0, 2.0)


def test_a_lone_node_creates_the_lease_and_renews_every_retry_period() -> None:
    sim = Sim(1, DEFAULT)
    sim.run(0.1)
    assert sim.leaders() == ["node1"]
    rec = sim.server.record
    assert rec is not None
    assert (rec.holder, rec.duration_seconds, rec.transitions) == ("node1", 15, 0)
    assert rec.renew_time.endswith("Z") and len(rec.renew_time.split(".")[1]) == 7
    writes = len(sim.server.writes)
    sim.run(20)
    assert len(sim.server.writes) - writes == pytest.approx(10, abs=1)


def test_followers_do_not_poll() -> None:
    sim = Sim(3, DEFAULT)
    sim.run(1)
    (leader,) = sim.leaders()
    before = {n.name: n.requests for n in sim.nodes}
    sim.run(60)
    for n in sim.nodes:
        if n.name != leader:
            assert n.requests == before[n.name], f"{n.name} polled"
    assert sim.overlaps == []


def test_killed_leader_is_replaced_within_lease_duration_plus_two_retry_periods() -> None:
    sim = Sim(3, DEFAULT, seed=1)
    sim.run(3)
    (leader,) = sim.leaders()
    sim.kill(leader)
    took = sim.run_until(lambda: any(n.election.leading for n in sim.nodes if n.alive), 30)
    assert took <= 15 + 2 * 2
    assert took >= 15 - 2 - 0.1, "no takeover before the lease could have expired"
    assert sim.overlaps == []
    rec = sim.server.record
    assert rec is not None and rec.transitions == 1


def test_released_lease_is_taken_at_once() -> None:
    sim = Sim(3, DEFAULT, seed=2)
    sim.run(3)
    (leader,) = sim.leaders()
    sim.node(leader).election.set_wanted(False)
    took = sim.run_until(lambda: any(n.election.leading for n in sim.nodes if n.name != leader), 5)
    assert took < 0.5
    assert sim.overlaps == []


def test_partitioned_leader_stops_before_anyone_else_can_start() -> None:
    sim = Sim(3, DEFAULT, seed=3)
    sim.run(3)
    (leader,) = sim.leaders()
    sim.partition(leader)
    stopped = sim.run_until(lambda: not sim.node(leader).election.leading, 10)
    assert stopped <= 5 + 0.05
    sim.run_until(lambda: any(n.election.leading for n in sim.nodes if n.name != leader), 30)
    assert sim.overlaps == []
    sim.heal(leader)
    sim.run(20)
    assert len(sim.leaders()) == 1 and sim.overlaps == []


def test_restarted_holder_takes_its_lease_back_at_once_keeping_history() -> None:
    sim = Sim(2, DEFAULT, seed=4)
    sim.run(3)
    (leader,) = sim.leaders()
    rec = sim.server.record
    assert rec is not None
    sim.kill(leader)
    sim.run(1)
    sim.restart(leader)
    took = sim.run_until(lambda: sim.node(leader).election.leading, 2)
    assert took < 0.2
    after = sim.server.record
    assert after is not None
    assert (after.transitions, after.acquire_time) == (rec.transitions, rec.acquire_time)


def test_racing_followers_exactly_one_wins() -> None:
    for seed in range(30):
        sim = Sim(5, FAST, seed=seed)
        sim.run(1)
        (leader,) = sim.leaders()
        sim.kill(leader)
        sim.run(6)
        assert len([n for n in sim.nodes if n.alive and n.election.leading]) == 1
        assert sim.overlaps == []


@pytest.mark.parametrize("seed", range(12))
def test_random_faults_never_give_two_announcers(seed: int) -> None:
    sim = Sim(4, FAST, seed=seed)
    rng = sim.rng
    for _ in range(60):
        sim.run(rng.uniform(0.1, 2.0))
        n = rng.choice(sim.nodes)
        action = rng.choice(["kill", "restart", "partition", "heal", "unwant", "want"])
        if action == "kill" and n.alive:
            sim.kill(n.name)
        elif action == "restart" and not n.alive:
            sim.restart(n.name)
        elif action == "partition" and n.alive:
            sim.partition(n.name)
        elif action == "heal" and n.alive and n.partitioned:
            sim.heal(n.name)
        elif action == "unwant" and n.alive:
            n.election.set_wanted(False)
        elif action == "want" and n.alive:
            n.election.set_wanted(True)
    assert sim.overlaps == [], sim.overlaps[:3]
    # Liveness: with every node healthy and wanting, someone leads again.
    for n in sim.nodes:
        if not n.alive:
            sim.restart(n.name)
        elif n.partitioned:
            sim.heal(n.name)
        n_now = sim.node(n.name)
        n_now.election.set_wanted(True)
    sim.run_until(lambda: len(sim.leaders()) == 1, 10)
    assert sim.overlaps == []


def _election(timings: Timings = DEFAULT) -> LeaseElection:
    e = LeaseElection("l", "me", timings, lambda: 0.5)
    e.set_wanted(True)
    return e


def test_an_answer_that_comes_after_the_renew_deadline_does_not_make_a_leader() -> None:
    e = _election()
    e.observe(None, 0.0)
    req = e.step(0.0, 1e9)
    assert req is not None and req.kind == "create"
    rec = LeaseRecord("me", 15, "a", "a", 0, "1")
    e.complete(req, Outcome(rec), 5.5)
    assert e.leading is False
    again = e.step(5.5, 1e9)
    assert again is not None and again.purpose == "acquire"


def test_an_older_watch_event_does_not_undo_our_takeover() -> None:
    e = _election()
    e.observe(LeaseRecord("other", 15, "a", "a", 3, "10"), 0.0)
    e.observe(LeaseRecord("", 1, "b", "b", 3, "11"), 1.0)
    req = e.step(1.0, 1e9)
    assert req is not None and req.record is not None and req.record.transitions == 4
    e.complete(req, Outcome(LeaseRecord("me", 15, "c", "c", 4, "12")), 1.01)
    assert e.leading
    e.observe(LeaseRecord("other", 15, "a", "a", 3, "10"), 1.02)
    assert e.leading, "a stale event flapped leadership"
    assert e.drain_events()[-1].leading is True


def test_a_conflict_makes_the_follower_ask_the_server() -> None:
    e = _election()
    e.observe(LeaseRecord("", 1, "a", "a", 0, "5"), 0.0)
    req = e.step(0.0, 1e9)
    assert req is not None and req.kind == "update"
    e.complete(req, Outcome(error="conflict", message="modified"), 0.01)
    nxt = e.step(0.01, 1e9)
    assert nxt is not None and nxt.kind == "get"


def test_errors_back_off_with_jitter() -> None:
    e = _election()
    e.observe(None, 0.0)
    req = e.step(0.0, 1e9)
    assert req is not None
    e.complete(req, Outcome(error="forbidden", message="leases is forbidden"), 0.0)
    assert e.last_error == "leases is forbidden"
    assert e.step(0.0, 1e9) is None
    assert e.next_deadline() == pytest.approx(2.0 * (1 + 0.5 * 1.2))


def test_renew_timeout_never_reaches_past_the_deadline() -> None:
    e = _election()
    e.observe(None, 0.0)
    req = e.step(0.0, 1e9)
    assert req is not None
    e.complete(req, Outcome(LeaseRecord("me", 15, "a", "a", 0, "1")), 0.01)
    assert e.leading
    renew = e.step(4.5, 1e9)
    assert renew is not None and renew.timeout == pytest.approx(0.5)
    assert e.step(5.0, 1e9) is None
    assert e.leading is False
    assert [ev.reason for ev in e.drain_events()] == ["acquired", "renew deadline passed"]


def test_settled_only_once_a_lease_we_still_hold_is_taken_back() -> None:
    e = _election()
    assert not e.settled, "not known yet"
    e.observe(LeaseRecord("me", 15, "a", "a", 2, "7"), 0.0)
    assert not e.settled, "the server says we hold it: take it back first"
    req = e.step(0.0, 1e9)
    assert req is not None and req.purpose == "acquire"
    e.complete(req, Outcome(LeaseRecord("me", 15, "a", "b", 2, "8")), 0.01)
    assert e.leading and e.settled
    other = _election()
    other.observe(LeaseRecord("someone", 15, "a", "a", 2, "7"), 0.0)
    assert other.settled, "held by another node: nothing of ours to resolve"


def test_an_answer_held_up_in_the_client_rate_limiter_counts_from_when_it_went_out() -> None:
    # Regression: a throttled agent (k8s-client-qps too low for its leases) never led again.
    # Requests waited in the limiter longer than the renew deadline, every answer was judged
    # "too late" from when the request was issued, and each one queued another request.
    e = _election()
    e.observe(None, 0.0)
    req = e.step(0.0, 1e9)
    assert req is not None and req.kind == "create"
    rec = LeaseRecord("me", 15, "a", "a", 0, "1")
    e.complete(req, Outcome(rec), 7.1, sent_at=7.0)  # left the limiter at 7.0
    assert e.leading
    assert e.next_deadline() == pytest.approx(7.0 + 2.0), "next renew counts from the send"
    assert e.step(11.9, 1e9) is not None and e.leading
    assert e.step(12.0, 1e9) is None and not e.leading, "renew deadline from the send"


def test_a_send_time_before_the_issue_is_ignored() -> None:
    e = _election()
    e.observe(None, 0.0)
    req = e.step(3.0, 1e9)
    assert req is not None
    e.complete(req, Outcome(LeaseRecord("me", 15, "a", "a", 0, "1")), 8.5, sent_at=1.0)
    assert e.leading is False, "a stale stamp must not stretch the deadline"


def test_takeover_latency_counts_from_release_or_expiry() -> None:
    e = _election()
    e.observe(LeaseRecord("other", 15, "a", "a", 1, "5"), 0.0)
    assert e.step(14.0, 1e9) is None, "still held"
    req = e.step(15.5, 1e9)  # expired at 15.0
    assert req is not None and req.purpose == "acquire"
    e.complete(req, Outcome(LeaseRecord("me", 15, "b", "b", 2, "6")), 15.7)
    (ev,) = e.drain_events()
    assert ev.leading and ev.takeover_seconds == pytest.approx(0.7)
    f = _election()
    f.observe(LeaseRecord("", 1, "a", "a", 1, "5"), 3.0)  # a release, seen at 3.0
    req = f.step(3.0, 1e9)
    assert req is not None
    f.complete(req, Outcome(LeaseRecord("me", 15, "b", "b", 2, "6")), 3.05)
    assert f.drain_events()[0].takeover_seconds == pytest.approx(0.05)
    g = _election()
    g.observe(None, 0.0)
    req = g.step(0.0, 1e9)
    assert req is not None
    g.complete(req, Outcome(LeaseRecord("me", 15, "b", "b", 0, "1")), 0.01)
    assert g.drain_events()[0].takeover_seconds is None, "created, not taken over"


def test_a_followers_old_error_clears_when_the_watch_shows_a_live_holder() -> None:
    e = _election()
    e.observe(None, 0.0)
    req = e.step(0.0, 1e9)
    assert req is not None
    e.complete(req, Outcome(error="forbidden", message="leases is forbidden"), 0.0)
    assert e.last_error == "leases is forbidden"
    e.observe(LeaseRecord("node2", 15, "a", "a", 1, "9"), 1.0)
    assert e.last_error == ""


def test_a_backoff_once_over_leaves_no_deadline_in_the_past() -> None:
    """After a failed request and a successful retry the election's next deadline is ahead: a
    backoff time left behind made the elector step it again and again (a busy loop; found by the
    1,000-Service benchmark, where start-up timeouts left hundreds of elections spinning)."""
    import random

    t = Timings(15.0, 5.0, 2.0)
    e = LeaseElection("x", "node1", t, random.Random(1).random)
    e.set_wanted(True)
    e.observe(None, 0.0)
    req = e.step(0.0, 1e9)
    assert req is not None
    e.complete(req, Outcome(error="other", message="timeout"), 0.1)
    assert e.step(0.2, 1e9) is None  # backing off
    retry = e.step(5.0, 1e9)
    assert retry is not None and retry.purpose == "acquire"
    e.complete(retry, Outcome(LeaseRecord("node1", 15, "a", "b", 0, "1")), 5.1)
    assert e.leading
    assert e.next_deadline() > 5.1
    assert e.next_deadline(True, 5.1) == float("inf")  # economy: a leader has no deadline
