"""Lifecycle: start in order, stop in reverse, a failed start stops what started, stop never
raises and runs once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.runtime import FakeClock, Lifecycle, StartError


def _recording(calls: list[str], name: str, fail: bool = False) -> Callable[[], None]:
    def hook() -> None:
        calls.append(name)
        if fail:
            raise RuntimeError(f"{name} broke")

    return hook


def _lifecycle(calls: list[str], names: list[str], failing_start: str = "") -> Lifecycle:
    lc = Lifecycle()
    for name in names:
        lc.append(
            name,
            start=_recording(calls, f"start {name}", fail=name == failing_start),
            stop=_recording(calls, f"stop {name}"),
        )
    return lc


def test_starts_in_order_and_stops_in_reverse() -> None:
    calls: list[str] = []
    lc = _lifecycle(calls, ["database", "devices", "elector"])
    assert lc.names == ["database", "devices", "elector"]
    lc.start()
    lc.stop()
    assert calls == [
        "start database",
        "start devices",
        "start elector",
        "stop elector",
        "stop devices",
        "stop database",
    ]


def test_a_failed_start_stops_what_started_in_reverse_and_names_the_hook() -> None:
    calls: list[str] = []
    lc = _lifecycle(calls, ["database", "devices", "elector", "metrics"], failing_start="elector")
    with pytest.raises(StartError, match="starting elector: start elector broke"):
        lc.start()
    assert calls == [
        "start database",
        "start devices",
        "start elector",
        "stop devices",
        "stop database",
    ]
    lc.stop()  # the agent's stop after a failed start: nothing more to do
    assert calls[-1] == "stop database"


def test_stop_never_raises_and_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    lc = Lifecycle()
    lc.append("first", stop=lambda: calls.append("first"))
    lc.append("broken", stop=_recording(calls, "broken", fail=True))
    lc.append("last", stop=lambda: calls.append("last"))
    lc.start()
    lc.stop()
    assert calls == ["last", "broken", "first"]
    assert "stopping broken failed" in caplog.text


def test_stop_runs_once_and_only_stops_what_started() -> None:
    calls: list[str] = []
    lc = _lifecycle(calls, ["a", "b"])
    lc.stop()  # nothing started
    assert calls == []
    lc2 = _lifecycle(calls, ["a", "b"])
    lc2.start()
    lc2.stop()
    lc2.stop()
    assert calls.count("stop a") == 1


def test_append_job_uses_its_name_start_and_stop() -> None:
    class Module:
        name = "pod-announcer"

        def __init__(self) -> None:
            self.calls: list[str] = []

        def start(self) -> None:
            self.calls.append("start")

        def stop(self) -> None:
            self.calls.append("stop")

    m = Module()
    lc = Lifecycle()
    lc.append_job(m)
    lc.start()
    lc.stop()
    assert lc.names == ["pod-announcer"] and m.calls == ["start", "stop"]


def test_fake_clock_moves_only_when_advanced_and_tells_listeners() -> None:
    clock = FakeClock(monotonic=10.0, now=1000.0)
    told: list[float] = []
    clock.on_advance(lambda: told.append(clock.monotonic()))
    assert clock.real_timeout(5.0) is None
    clock.advance(2.5)
    assert (clock.monotonic(), clock.now(), told) == (12.5, 1002.5, [12.5])
    with pytest.raises(ValueError):
        clock.advance(-1)
