"""The agent's shutdown order: the planned handover first, then every module in reverse start
order. Anything stopped before the handover delays the followers (the metrics server alone took
up to 0.5 s to stop, measured as SIGTERM handovers of 0.02-0.51 s with metrics on)."""

from __future__ import annotations

from typing import Any

from agent.agent import Agent
from agent.config import Config


class Announcer:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def stop(self) -> None:
        self.calls.append("withdraw")


class Elector:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def stop(self, release_timeout: float) -> None:
        self.calls.append("release")


def _agent(calls: list[str]) -> Agent:
    agent = Agent(Config(), {}, datapath=False)
    agent.announcer = Announcer(calls)  # type: ignore[assignment]
    agent.elector = Elector(calls)  # type: ignore[assignment]

    def stopping(name: str) -> Any:
        return lambda: calls.append(name)

    # As start() registers them: the announcer's stop (its datapath part) after the modules it
    # needs, the metrics server and health publisher last.
    agent._stops = [
        ("database", stopping("database")),
        ("l2-announcer", agent._stop_announcing),
        ("lease-gc", stopping("lease-gc")),
        ("metrics", stopping("metrics")),
        ("health", stopping("health")),
    ]
    return agent


def test_leases_are_handed_over_before_any_module_stops() -> None:
    calls: list[str] = []
    _agent(calls).stop()
    assert calls == ["withdraw", "release", "health", "metrics", "lease-gc", "database"]


def test_the_handover_happens_once_even_when_stopped_twice() -> None:
    calls: list[str] = []
    agent = _agent(calls)
    agent.stop()
    agent.stop()
    agent._stop_announcing()
    assert calls.count("withdraw") == 1 and calls.count("release") == 1
