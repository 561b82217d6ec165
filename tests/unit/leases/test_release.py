"""Releases on the way out land, on an apiserver slower than one retry period.

Found against a real apiserver on a busy machine, where a lease write took up to half a second
with the seed's fast timers (3 s / 1 s / 200 ms): a release was given only 200 ms, and a renew
that timed out on the client was still committed, so the release that followed got 409 and was
never tried again. Either way the lease was left to expire (3 s) instead of being taken over at
once on SIGTERM."""

from __future__ import annotations

import threading
import time

from agent.leases.api import LeaseAPIError
from agent.leases.election import LeaseElection, Outcome, Timings
from agent.leases.elector import Elector
from agent.leases.record import LeaseRecord
from tests.unit.leases.fake_api import FakeLeaseAPI

FAST = Timings(lease_duration=3.0, renew_deadline=1.0, retry_period=0.2)
NAME = "cilium-l2announce-default-svc"
SLOW = 0.35  # seconds the server takes to answer a release
WALL = 1_800_000_000.0


class SlowReleases(FakeLeaseAPI):
    """Releases (an empty holder) take SLOW seconds; a client that stops waiting sooner has
    cancelled the write, which is then not applied."""

    def update(self, who: str, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord:
        if not record.holder:
            threading.Event().wait(min(SLOW, timeout))
            if timeout < SLOW:
                raise LeaseAPIError("context deadline exceeded")
        return super().update(who, name, record, timeout)


def test_a_slow_release_still_lands_within_the_release_budget() -> None:
    api = SlowReleases()
    e = Elector(api.client("node1"), "node1", FAST, lambda *_: None)
    api.observers.append(e.observe)
    e.start()
    e.want(NAME, True)
    deadline = time.monotonic() + 5
    while not e.is_leading(NAME) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert e.is_leading(NAME)
    e.stop(release_timeout=0.8)
    assert api.leases[NAME].holder == "", "the lease was left to expire"


def _ours(rv: str) -> LeaseRecord:
    stamp = "2027-01-15T08:00:00.000000Z"
    return LeaseRecord("node1", 3, stamp, stamp, 0, rv)


def test_a_release_refused_by_our_own_late_renew_asks_and_releases_again() -> None:
    """A renew times out on the client but the server commits it; the release that follows
    carries the old resourceVersion and gets 409, while the watch has already shown the renew.
    Nothing more will come from the watch: the election must ask and release again."""
    e = LeaseElection(NAME, "node1", FAST, rand=lambda: 0.0)
    e.set_wanted(True)
    e.observe(None, 0.0)
    create = e.step(0.0, WALL)
    assert create is not None
    e.complete(create, Outcome(_ours("5")), 0.01)
    renew = e.step(0.2, WALL)
    assert renew is not None and renew.purpose == "renew"
    e.complete(renew, Outcome(error="other", message="Read timed out"), 0.4)  # committed: rv 6
    e.set_wanted(False)
    release = e.step(0.4, WALL)
    assert release is not None and release.purpose == "release"
    assert release.record is not None and release.record.resource_version == "5"
    e.observe(_ours("6"), 0.41)  # the watch shows the renew while the release is on its way
    e.complete(release, Outcome(error="conflict"), 0.42)
    ask = e.step(0.42, WALL)
    assert ask is not None and ask.kind == "get", "the lease is left to expire"
    e.complete(ask, Outcome(_ours("6")), 0.43)
    again = e.step(0.43, WALL)
    assert again is not None and again.purpose == "release"
    assert again.record is not None and again.record.resource_version == "6"
