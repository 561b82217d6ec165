"""The announcer's typed health: Starting while it waits for its inputs, OK with what it selects
and leads, Degraded while a pass raises (and the pass retried), Stopped after stop."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent.announcer.controller import L2Announcer
from agent.runtime import FakeClock, Level
from common.tables import L2_ANNOUNCE, POLICIES, SERVICES
from common.tables.policies import Policy
from tests.unit.announcer.test_announcer import (
    RED,
    Harness,
    restarted_holding_red,
    started,
    stopped,
    until,
)


@pytest.fixture
def h() -> Iterator[Harness]:
    h = started()
    yield h
    stopped(h)


def test_starting_until_the_inputs_are_there() -> None:
    h = Harness()
    assert h.announcer.name == h.announcer.health.name == "l2-announcer"
    h.announcer.start()
    try:
        health = h.announcer.health.current()
        assert health.level is Level.STARTING
        assert health.message == "waiting for the node, services, policies and devices"
    finally:
        h.announcer.stop()
        h.db.close()
    assert h.announcer.health.current().level is Level.STOPPED


def test_ok_with_what_it_selects_and_leads(h: Harness) -> None:
    until(lambda: h.announcer.health.current().level is Level.OK)
    assert str(h.announcer.health.current()) == "OK: 0 service(s) selected, leading 0"
    h.write(POLICIES, Policy("p1", 1, None, None, (), False, True))
    h.write(SERVICES, RED)
    until(lambda: len(h.entries()) == 2)
    until(lambda: str(h.announcer.health.current()) == "OK: 1 service(s) selected, leading 1")


def test_a_pass_that_raises_is_degraded_and_retried(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    until(lambda: h.announcer.health.current().level is Level.OK)
    real = h.announcer._write_entries
    broken = [True]

    def write_entries(desired: dict[tuple[str, str], tuple[object, ...]]) -> None:
        if broken:
            raise RuntimeError("injected")
        real(desired)  # type: ignore[arg-type]

    monkeypatch.setattr(h.announcer, "_write_entries", write_entries)
    h.write(POLICIES, Policy("p1", 1, None, None, (), False, True))
    h.write(SERVICES, RED)
    until(lambda: h.announcer.health.current().level is Level.DEGRADED)
    assert "RuntimeError: injected" in h.announcer.health.current().message
    broken.clear()
    # No new change needed: the failed pass is retried by itself.
    until(lambda: len(h.entries()) == 2)
    until(lambda: h.announcer.health.current().level is Level.OK)


def test_the_settle_timeout_is_measured_on_the_injected_clock() -> None:
    """The elector never settles here (taking back our old lease hangs), so only the settle
    timeout lets ``l2-announce`` be initialized: it passes when the fake clock is moved."""
    clock = FakeClock()
    h = Harness()
    h.announcer = L2Announcer(
        h.db, h.elector, "node1", lambda *a: None, settle_timeout=30.0, clock=clock
    )
    gate = restarted_holding_red(h)
    h.elector.start()
    h.announcer.start()
    try:
        time.sleep(0.3)  # several passes, in real time
        assert not h.db.initialized(L2_ANNOUNCE), "the fake clock stands still"
        clock.advance(30.0)
        until(lambda: h.db.initialized(L2_ANNOUNCE))
    finally:
        gate.set()
        h.announcer.stop()
        h.elector.stop(release_timeout=0.5)
        h.db.close()
