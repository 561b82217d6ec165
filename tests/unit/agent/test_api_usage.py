"""The agent's own request count, and the client limit its leases need."""

from __future__ import annotations

import logging

import pytest

from agent.api_usage import ApiUsage
from agent.runtime import FakeClock


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.throttles: list[float] = []

    def on_request(self, verb: str, code: str) -> None:
        self.requests.append((verb, code))

    def on_throttle(self, seconds: float) -> None:
        self.throttles.append(seconds)


def test_the_rate_is_the_requests_of_the_last_minute_and_each_is_passed_on() -> None:
    clock = FakeClock()
    metrics = Recorder()
    usage = ApiUsage(5.0, 10, 5.0, forward=metrics, clock=clock)
    for _ in range(30):
        usage.on_request("PUT", "200")
        clock.advance(1.0)
    assert usage.rate() == pytest.approx(1.0)  # 30 in 30 s
    for _ in range(60):
        usage.on_request("PUT", "200")
        usage.on_request("GET", "200")
        clock.advance(1.0)
    assert usage.rate() == pytest.approx(2.0)  # the older ones have left the window
    usage.on_throttle(0.5)
    assert len(metrics.requests) == 150 and metrics.throttles == [0.5]
    assert usage.total == 150


def test_the_need_follows_the_leases_and_one_warning_says_when_the_limit_is_too_low(
    caplog: pytest.LogCaptureFixture,
) -> None:
    usage = ApiUsage(5.0, 10, 5.0, clock=FakeClock())
    usage.leases = lambda: 15
    assert usage.need() == (16, 5, 10)  # ceil(1.5 * 16 / 5) = 5: enough
    assert "configured 5, 10" in usage.health.current().message
    assert "too low" not in usage.health.current().message
    usage.leases = lambda: 99
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            message = usage.health.current().message
    assert usage.need() == (100, 30, 60)
    assert message.endswith(
        "100 lease(s) need k8s-client-qps 30, k8s-client-burst 60; configured 5, 10 (too low)"
    )
    warnings = [r for r in caplog.records if "rate limit is below" in r.getMessage()]
    assert len(warnings) == 1


def test_in_economy_mode_only_the_heartbeat_is_renewed_but_a_takeover_must_fit() -> None:
    usage = ApiUsage(9.0, 18, 5.0, clock=FakeClock(), economy=True)
    usage.leases = lambda: 21
    assert usage.need() == (22, 3, 6)  # 18 + 5 s x 3 >= 1.5 x 22
    usage.leases = lambda: 999
    assert usage.need() == (1000, 297, 594)  # a takeover of 1,000 leases within 5 s
    usage.leases = lambda: 0
    assert usage.need() == (1, 1, 2)  # the heartbeat alone


def test_a_measured_rate_near_the_limit_is_too_low_whatever_the_rule_says() -> None:
    clock = FakeClock()
    usage = ApiUsage(5.0, 10, 5.0, clock=clock)
    for _ in range(50):
        usage.on_request("GET", "200")  # start-up: a burst, not a rate yet
    assert "too low" not in usage.health.current().message
    for _ in range(60):
        for _ in range(5):
            usage.on_request("PUT", "200")
        clock.advance(1.0)
    assert usage.need() == (1, 1, 2)
    assert usage.health.current().message.startswith("5.8 requests/s")  # the burst still in
    assert usage.health.current().message.endswith("(too low)")
