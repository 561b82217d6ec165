"""Jobs: a failing loop is logged, marks its health Degraded, is retried with backoff and recovers;
stop wakes the loop and joins it with a timeout; timers and one-shots."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from agent.runtime import Backoff, Health, HealthReporter, Job, Level, OneShot, Timer

WAIT = 5.0


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_backoff_doubles_from_first_and_is_capped() -> None:
    b = Backoff(first=0.5, cap=3.0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.delay(0) == 0.5


def test_a_failing_loop_is_degraded_retried_with_backoff_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    running = threading.Event()

    def run(stopping: threading.Event) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise RuntimeError(f"boom {calls}")
        job.succeeded()  # past its start: the earlier failures no longer count
        running.set()
        stopping.wait()

    job = Job("looper", run, backoff=Backoff(first=0.01, cap=0.02))
    job.health.ok("looping")
    seen: list[Health] = []

    def degraded_seen() -> bool:
        h = job.health.current()
        if h.level is Level.DEGRADED:
            seen.append(h)
        return bool(seen)

    job.start()
    try:
        assert wait_until(degraded_seen)
        assert seen[0].message.startswith("RuntimeError: boom")
        assert "retrying in" in seen[0].message
        assert running.wait(WAIT)
        assert job.failures == 0
        assert job.health.current() == Health.ok("looping")
    finally:
        assert job.stop()
    assert calls == 3
    assert "job looper failed; retrying" in caplog.text  # the first failure with its traceback
    assert "failed again (2)" in caplog.text


def test_a_probe_does_not_hide_a_failure_the_guard_caught() -> None:
    reporter = HealthReporter("probed", probe=lambda: Health.ok("stale but fine"))
    reporter.failed("crashed")
    assert reporter.current() == Health.degraded("crashed")
    reporter.recovered()
    assert reporter.current() == Health.ok("stale but fine")


def test_stop_wakes_the_loop_and_joins_it() -> None:
    cond = threading.Condition()
    woken: list[bool] = []

    def run(stopping: threading.Event) -> None:
        with cond:
            cond.wait_for(stopping.is_set)  # blocked on something other than the stop event

    def wake() -> None:
        woken.append(True)
        with cond:
            cond.notify_all()

    job = Job("waiter", run, wake=wake)
    job.start()
    assert job.running
    assert job.stop(timeout=WAIT)
    assert woken == [True]
    assert not job.running
    assert job.health.current() == Health.stopped()


def test_stop_gives_up_on_a_stuck_loop_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def run(stopping: threading.Event) -> None:
        release.wait(WAIT)  # ignores the stop event

    job = Job("stuck", run)
    job.start()
    try:
        assert job.stop(timeout=0.05) is False
        assert "job stuck did not stop within" in caplog.text
        assert job.running
    finally:
        release.set()
        assert job.join(WAIT)


def test_stop_after_a_failure_while_stopping_reports_stopped() -> None:
    def run(stopping: threading.Event) -> None:
        stopping.wait()
        raise RuntimeError("cleanup failed")

    job = Job("fails-on-stop", run, backoff=Backoff(first=0.01))
    job.start()
    assert job.stop(timeout=WAIT)
    assert job.health.current().level is Level.STOPPED


def test_stop_before_start_and_twice_are_harmless() -> None:
    job = Job("idle", lambda stopping: None)
    assert job.stop()
    job2 = Job("twice", lambda stopping: stopping.wait())
    job2.start()
    assert job2.stop(timeout=WAIT) and job2.stop(timeout=WAIT)


def test_a_job_starts_once() -> None:
    job = Job("once", lambda stopping: stopping.wait())
    job.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            job.start()
    finally:
        job.stop()


def test_wake_failing_does_not_stop_the_stop(caplog: pytest.LogCaptureFixture) -> None:
    def wake() -> None:
        raise OSError("gone")

    job = Job("bad-wake", lambda stopping: stopping.wait(), wake=wake)
    job.start()
    assert job.stop(timeout=WAIT)
    assert "waking job bad-wake to stop failed" in caplog.text


def test_timer_runs_every_interval_and_a_failing_call_degrades_until_one_succeeds() -> None:
    results = iter([None, ValueError("no route"), None])
    calls: list[int] = []
    degraded = threading.Event()

    def fn() -> None:
        calls.append(1)
        outcome = next(results, None)
        if outcome is not None:
            degraded.set()
            raise outcome

    timer = Timer("tick", 0.01, fn)
    assert timer.health.current() == Health.ok()
    timer.start()
    try:
        assert degraded.wait(WAIT)
        assert wait_until(lambda: len(calls) >= 3 and timer.health.current() == Health.ok())
    finally:
        assert timer.stop()


def test_timer_waits_first_seconds_before_its_first_call() -> None:
    calls: list[int] = []
    timer = Timer("later", 0.01, lambda: calls.append(1), first=60.0)
    timer.start()
    assert not wait_until(lambda: bool(calls), timeout=0.1)
    assert timer.stop()
    assert calls == []


def test_timer_failure_shows_in_its_health() -> None:
    failed = threading.Event()

    def fn() -> None:
        failed.set()
        raise ConnectionError("apiserver down")

    timer = Timer("gc", 60.0, fn)
    timer.start()
    try:
        assert failed.wait(WAIT)
        assert wait_until(lambda: timer.health.current().level is Level.DEGRADED)
        assert timer.health.current() == Health.degraded("ConnectionError: apiserver down")
    finally:
        timer.stop()


def test_oneshot_is_retried_until_it_succeeds_then_reports_done() -> None:
    attempts: list[int] = []

    def fn(stopping: threading.Event) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("not yet")

    once = OneShot("setup", fn, backoff=Backoff(first=0.01, cap=0.01))
    once.start()
    assert once.join(WAIT)
    assert len(attempts) == 3
    assert once.health.current() == Health.ok("done")


def test_oneshot_stopped_while_retrying_gives_up() -> None:
    def fn(stopping: threading.Event) -> None:
        raise OSError("never")

    once = OneShot("hopeless", fn, backoff=Backoff(first=60.0))
    once.start()
    assert wait_until(lambda: once.health.current().level is Level.DEGRADED)
    assert once.stop(timeout=WAIT)  # the backoff wait is the stop event: no 60 s delay
    assert once.health.current().level is Level.STOPPED


def test_oneshot_reports_the_done_health_it_was_given() -> None:
    once = OneShot("custom", lambda stopping: None, done=Health.ok("reconciled"))
    once.start()
    assert once.join(WAIT)
    assert once.health.current() == Health.ok("reconciled")
