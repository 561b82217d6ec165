"""The elector's typed health: how many leases it leads, Degraded while requests fail, Stopped
after stop; a scheduler step that raises is retried and shows as Degraded meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from agent.leases.elector import Elector
from agent.runtime import Level
from tests.unit.leases.fake_api import FakeLeaseAPI
from tests.unit.leases.test_elector import NAME, Recorder, T


def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def api() -> FakeLeaseAPI:
    return FakeLeaseAPI()


@pytest.fixture
def elector(api: FakeLeaseAPI) -> Iterator[tuple[Elector, Recorder]]:
    rec = Recorder()
    e = Elector(api.client("node1"), "node1", T, rec)
    api.observers.append(e.observe)
    e.start()
    yield e, rec
    e.stop(release_timeout=0.5)


def test_leading_is_ok_with_the_count_and_stop_is_stopped(api: FakeLeaseAPI) -> None:
    rec = Recorder()
    e = Elector(api.client("node1"), "node1", T, rec)
    api.observers.append(e.observe)
    assert e.name == e.health.name == "elector"
    e.start()
    assert str(e.health.current()) == "OK: leading 0 of 0 lease(s)"
    e.want(NAME, True)
    rec.wait_for(lambda: any(ev[2] for ev in rec.events))
    assert str(e.health.current()) == "OK: leading 1 of 1 lease(s)"
    e.stop(release_timeout=0.5)
    assert e.health.current().level is Level.STOPPED


def test_failing_requests_are_degraded_with_the_first_error(
    elector: tuple[Elector, Recorder], api: FakeLeaseAPI
) -> None:
    e, rec = elector
    api.forbid = True
    e.want(NAME, True)
    until(lambda: e.health.current().level is Level.DEGRADED)
    health = e.health.current()
    assert health.message.startswith("leading 0 of 1 lease(s); error: ")
    assert "is forbidden" in health.message
    api.forbid = False
    rec.wait_for(lambda: any(ev[2] for ev in rec.events))
    until(lambda: str(e.health.current()) == "OK: leading 1 of 1 lease(s)")


def test_a_step_that_raises_still_reports_and_sends_and_is_retried(
    elector: tuple[Elector, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    e, rec = elector
    real = e.churn.acquired

    def acquired(name: str, now: float) -> None:
        # A bug in the middle of a step, once: after the election decided to lead.
        monkeypatch.setattr(e.churn, "acquired", real)
        raise RuntimeError("injected")

    monkeypatch.setattr(e.churn, "acquired", acquired)
    e.want(NAME, True)
    rec.wait_for(lambda: any(ev[2] for ev in rec.events))  # reported despite the failure
    until(lambda: "job elector failed" in caplog.text)
    assert "RuntimeError: injected" in caplog.text
    until(lambda: str(e.health.current()) == "OK: leading 1 of 1 lease(s)")
    time.sleep(3 * T.retry_period)
    assert e.is_leading(NAME), "its renewals were sent: it still leads"
