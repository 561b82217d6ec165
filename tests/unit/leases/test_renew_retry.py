"""A leader's failed renew is retried after one retry period, not after a jittered backoff.

Found against a real apiserver throttling the agent (API Priority and Fairness): a renew refused
with 429 was retried 2-4.4 s later with the default timers (15 s / 5 s / 2 s), past the 5 s renew
deadline about half the time, so one throttled request dropped the lease and the VIP went silent
until it was taken back."""

from __future__ import annotations

from agent.leases.election import LeaseElection, Outcome, Timings
from agent.leases.record import LeaseRecord

DEFAULT = Timings(15.0, 5.0, 2.0)
WALL = 1_800_000_000.0


def _ours(rv: str) -> LeaseRecord:
    return LeaseRecord(
        "node1", 15, "2027-01-15T08:00:00.000000Z", "2027-01-15T08:00:00.000000Z", 0, rv
    )


def test_one_refused_renew_does_not_drop_the_lease() -> None:
    e = LeaseElection("lease", "node1", DEFAULT, rand=lambda: 1.0)  # the longest jitter
    e.set_wanted(True)
    e.observe(None, 0.0)
    create = e.step(0.0, WALL)
    assert create is not None and create.kind == "create"
    e.complete(create, Outcome(_ours("1")), 0.01)
    assert e.leading

    renew = e.step(2.0, WALL + 2)
    assert renew is not None and renew.purpose == "renew"
    e.complete(renew, Outcome(error="other", message="429 Too Many Requests"), 2.01)
    assert e.leading

    retry = e.step(4.0, WALL + 4)  # one retry period after the refused one went out
    assert retry is not None and retry.purpose == "renew", "the retry waits for a backoff"
    e.complete(retry, Outcome(_ours("2")), 4.01)
    assert e.step(5.5, WALL + 5.5) is None
    assert e.leading, "dropped after a single refused renew"
    assert [ev.leading for ev in e.drain_events()] == [True]


def test_an_acquire_that_fails_still_backs_off() -> None:
    e = LeaseElection("lease", "node1", DEFAULT, rand=lambda: 1.0)
    e.set_wanted(True)
    e.observe(None, 0.0)
    create = e.step(0.0, WALL)
    assert create is not None
    e.complete(create, Outcome(error="other", message="429 Too Many Requests"), 0.01)
    assert e.step(2.0, WALL + 2) is None
    assert e.step(4.5, WALL + 4.5) is not None  # 0.01 + 2 x (1 + 1.2)
