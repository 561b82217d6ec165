from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.k8s.client import install_limits
from agent.k8s.ratelimit import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_burst_goes_at_once_then_qps() -> None:
    ft = FakeTime()
    rl = RateLimiter(5, 10, ft.clock, ft.sleep)
    waits = [rl.wait() for _ in range(12)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(0.2)
    assert waits[11] == pytest.approx(0.2)


def test_tokens_refill_but_never_beyond_burst() -> None:
    ft = FakeTime()
    rl = RateLimiter(5, 10, ft.clock, ft.sleep)
    for _ in range(10):
        rl.wait()
    ft.t += 100
    assert [rl.wait() for _ in range(10)] == [0.0] * 10
    assert rl.wait() == pytest.approx(0.2)


def test_a_wait_of_a_second_or_more_logs_client_gos_line(caplog: pytest.LogCaptureFixture) -> None:
    # Seven callers at the same instant: their waits queue up behind each other.
    caplog.set_level(logging.INFO, logger="l2announcer.k8s")
    ft = FakeTime()
    rl = RateLimiter(5, 1, ft.clock, ft.slept.append)
    for _ in range(7):
        rl.wait("PUT", "https://198.51.100.1:6443/apis/coordination.k8s.io/v1/leases/x")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Waited for 1s due to client-side throttling, not priority and fairness, "
        "request: PUT:https://198.51.100.1:6443/apis/coordination.k8s.io/v1/leases/x",
        "Waited for 1.2s due to client-side throttling, not priority and fairness, "
        "request: PUT:https://198.51.100.1:6443/apis/coordination.k8s.io/v1/leases/x",
    ]


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0, 10)


def test_every_request_is_limited_and_gets_a_timeout() -> None:
    seen: list[tuple[str, str, Any]] = []

    class Rest:
        def request(self, method: str, url: str, **kw: Any) -> str:
            seen.append((method, url, kw.get("_request_timeout")))
            return "ok"

    class Api:
        rest_client = Rest()

    ft = FakeTime()
    api = Api()
    install_limits(api, RateLimiter(1, 1, ft.clock, ft.sleep), default_timeout=7.0)
    assert api.rest_client.request("GET", "/a") == "ok"
    api.rest_client.request("GET", "/b", _request_timeout=(3, 60))
    assert seen == [("GET", "/a", 7.0), ("GET", "/b", (3, 60))]
    assert ft.slept == [pytest.approx(1.0)]
