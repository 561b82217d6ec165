"""LatestWriter: the latest value per key, off the caller's thread; equal values skipped with an
essence; a failed write forgotten; stop drops what is pending."""

from __future__ import annotations

import threading
import time

from agent.latest_writer import LatestWriter


class Api:
    """A write that blocks until released, so tests can queue values behind it."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.writes: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.gate = threading.Event()
        self.fail = fail or set()

    def write(self, key: str, value: str) -> None:
        self.gate.wait(5)
        if value in self.fail:
            raise RuntimeError(value)
        self.writes.append((key, value))

    def failed(self, key: str, e: Exception) -> None:
        self.errors.append(f"{key}: {e}")


def _settle(w: LatestWriter[str, str], api: Api, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(api.writes) + len(api.errors) < count:
        assert time.monotonic() < deadline, (api.writes, api.errors)
        time.sleep(0.005)


def test_only_the_latest_value_per_key_is_written() -> None:
    api = Api()
    w: LatestWriter[str, str] = LatestWriter("t", api.write, api.failed)
    w.start()
    w.submit("a", "1")  # taken at once, blocks in write
    time.sleep(0.05)
    for v in ("2", "3", "4"):
        w.submit("a", v)
    w.submit("b", "x")
    api.gate.set()
    _settle(w, api, 3)
    w.stop()
    assert api.writes == [("a", "1"), ("a", "4"), ("b", "x")]


def test_an_equal_essence_is_skipped_until_a_write_fails() -> None:
    api = Api(fail={"boom"})
    api.gate.set()
    w: LatestWriter[str, str] = LatestWriter("t", api.write, api.failed, essence=str.lower)
    w.start()
    w.submit("a", "v")
    _settle(w, api, 1)
    w.submit("a", "V")  # same essence: skipped
    w.submit("a", "boom")
    _settle(w, api, 2)
    assert api.errors == ["a: boom"]
    w.submit("a", "boom")  # the failure was forgotten: written (and failing) again
    _settle(w, api, 3)
    w.stop()
    assert api.writes == [("a", "v")] and api.errors == ["a: boom", "a: boom"]


def test_stop_drops_what_is_pending() -> None:
    api = Api()
    w: LatestWriter[str, str] = LatestWriter("t", api.write, api.failed)
    w.start()
    w.submit("a", "1")
    time.sleep(0.05)
    w.submit("b", "2")
    threading.Timer(0.1, api.gate.set).start()
    w.stop()
    assert api.writes == [("a", "1")]


def test_a_failed_write_degrades_its_health_until_a_write_succeeds() -> None:
    from agent.runtime import Health

    api = Api(fail={"boom"})
    api.gate.set()
    w: LatestWriter[tuple[str, str], str] = LatestWriter("service-status", api.write, api.failed)  # type: ignore[arg-type]
    assert w.health.current().level.value == "Starting"
    w.start()
    try:
        w.submit(("default", "web"), "boom")
        _settle(w, api, 1)  # type: ignore[arg-type]
        assert w.health.current() == Health.degraded("writing default/web failed: boom")
        w.submit(("default", "web"), "fine")
        _settle(w, api, 2)  # type: ignore[arg-type]
        assert w.health.current() == Health.ok()
    finally:
        w.stop()
    assert w.health.current() == Health.stopped()
