"""The elector's driver: real threads and a real clock, short timers, an in-memory API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.leases.api import SendTime
from agent.leases.election import Timings
from agent.leases.elector import Elector
from agent.leases.record import LeaseRecord
from tests.unit.leases.fake_api import FakeLeaseAPI

T = Timings(lease_duration=2.0, renew_deadline=0.8, retry_period=0.2)
NAME = "cilium-l2announce-default-svc"
# A lease far longer than any wait below: a takeover that soon can only be on the release.
LONG_LEASE = Timings(lease_duration=60.0, renew_deadline=0.8, retry_period=0.2)
# Between the stalled leader's renew deadline and its lease's expiry, a gap that a busy machine's
# scheduling cannot close (with T it is 1.2 s).
WIDE_GAP = Timings(lease_duration=4.0, renew_deadline=0.8, retry_period=0.2)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[float, str, bool, str]] = []
        self.cond = threading.Condition()

    def __call__(self, name: str, leading: bool, reason: str) -> None:
        with self.cond:
            self.events.append((time.monotonic(), name, leading, reason))
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[], bool], timeout: float = 10) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, timeout), self.events


Make = Callable[..., tuple[Elector, "Recorder"]]


@pytest.fixture
def api() -> FakeLeaseAPI:
    return FakeLeaseAPI()


@pytest.fixture
def make(api: FakeLeaseAPI) -> Iterator[Make]:
    made: list[Elector] = []

    def make(identity: str, timings: Timings = T) -> tuple[Elector, Recorder]:
        rec = Recorder()
        e = Elector(api.client(identity), identity, timings, rec)
        api.observers.append(e.observe)  # the fake watch
        e.start()
        made.append(e)
        return e, rec

    yield make
    for e in made:
        e.stop(release_timeout=0.5)


def test_one_of_two_leads_and_the_other_takes_over_at_once_on_release(
    make: Make, api: FakeLeaseAPI
) -> None:
    a, ra = make("node1", LONG_LEASE)
    b, rb = make("node2", LONG_LEASE)
    a.want(NAME, True)
    ra.wait_for(lambda: any(ev[2] for ev in ra.events))
    b.want(NAME, True)
    time.sleep(0.5)  # a few renew periods: node2 must stay a follower
    assert b.leading() == set()
    assert {n: str(c) for n, c in b.campaigns().items()} == {NAME: "following node1"}
    a.stop(release_timeout=1.0)
    assert ra.events[-1][2] is False
    released_at = ra.events[-1][0]
    rb.wait_for(lambda: any(ev[2] for ev in rb.events))
    assert api.leases[NAME].holder == "node2"
    assert api.leases[NAME].transitions == 1
    assert rb.events[0][0] - released_at < LONG_LEASE.lease_duration, "took over on release"


def test_a_stalled_leader_stops_before_the_lease_can_expire(make: Make, api: FakeLeaseAPI) -> None:
    a, ra = make("node1", WIDE_GAP)
    b, rb = make("node2", WIDE_GAP)
    a.want(NAME, True)
    ra.wait_for(lambda: any(ev[2] for ev in ra.events))
    b.want(NAME, True)
    api.hang_for.add("node1")
    ra.wait_for(lambda: ra.events[-1][2] is False, timeout=WIDE_GAP.renew_deadline + 2)
    stopped_at = ra.events[-1][0]
    assert ra.events[-1][3] == "renew deadline passed"
    rb.wait_for(lambda: any(ev[2] for ev in rb.events), timeout=WIDE_GAP.lease_duration + 3)
    assert stopped_at < rb.events[0][0]


def test_transport_errors_and_403_never_kill_the_elector(
    make: Make,
    api: FakeLeaseAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.explode = True
    a, ra = make("node1")
    a.want(NAME, True)
    time.sleep(0.6)
    api.explode = False
    api.forbid = True
    time.sleep(0.6)
    forbidden = [r for r in caplog.records if "is forbidden" in r.getMessage()]
    assert len(forbidden) == 1, "a repeated failure is logged once"
    assert "ConnectionResetError" in caplog.text
    api.forbid = False
    ra.wait_for(lambda: any(ev[2] for ev in ra.events))
    assert a.is_leading(NAME)


def test_unwanted_lease_is_released_and_forgotten(make: Make, api: FakeLeaseAPI) -> None:
    a, ra = make("node1")
    a.want(NAME, True)
    ra.wait_for(lambda: any(ev[2] for ev in ra.events))
    a.want(NAME, False)
    ra.wait_for(lambda: ra.events[-1][2] is False)
    deadline = time.monotonic() + 5
    while api.leases[NAME].holder != "" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.leases[NAME].holder == ""
    assert api.leases[NAME].duration_seconds == 1
    while a.campaigns() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert a.campaigns() == {}


def test_stopped_callback_runs_before_the_release_is_sent(api: FakeLeaseAPI) -> None:
    order: list[str] = []

    def cb(name: str, leading: bool, reason: str) -> None:
        if not leading:
            # What the API holds while the callback withdraws the announcements.
            order.append(f"callback with holder={api.leases[NAME].holder!r}")

    e = Elector(api.client("node1"), "node1", T, cb)
    api.observers.append(e.observe)
    e.start()
    try:
        e.want(NAME, True)
        deadline = time.monotonic() + 5
        while not e.is_leading(NAME) and time.monotonic() < deadline:
            time.sleep(0.01)
        e.want(NAME, False)
        while api.leases[NAME].holder and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        e.stop(release_timeout=0.5)
    assert order == ["callback with holder='node1'"]
    assert api.leases[NAME].holder == ""


def test_a_throttled_client_still_leads(api: FakeLeaseAPI) -> None:
    """Regression: every request waits in a client-side rate limiter for longer than the renew
    deadline; counted from when the request went out (``sent.at``), the node leads."""
    inner = api.client("node1")

    class Throttled:
        def _wait(self, sent: SendTime | None) -> None:
            time.sleep(T.renew_deadline + 0.2)
            if sent is not None:
                sent.at = time.monotonic()

        def get(
            self, name: str, timeout: float, *, sent: SendTime | None = None
        ) -> LeaseRecord | None:
            self._wait(sent)
            return inner.get(name, timeout)

        def create(
            self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
        ) -> LeaseRecord:
            self._wait(sent)
            return inner.create(name, record, timeout)

        def update(
            self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
        ) -> LeaseRecord:
            self._wait(sent)
            return inner.update(name, record, timeout)

    rec = Recorder()
    e = Elector(Throttled(), "node1", T, rec)
    api.observers.append(e.observe)
    e.start()
    try:
        e.want(NAME, True)
        rec.wait_for(lambda: any(ev[2] for ev in rec.events), timeout=5)
    finally:
        e.stop(release_timeout=0.1)
