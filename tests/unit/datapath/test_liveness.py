"""LivenessStamper: stamps at once and periodically, keeps the stamp on stop, clears on demand."""

from __future__ import annotations

import threading

from bpf.liveness import LivenessStamper


class FakeLiveness:
    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.cleared = False
        self.two = threading.Event()

    def stamp(self, now_ns: int) -> None:
        self.stamps.append(now_ns)
        if len(self.stamps) >= 2:
            self.two.set()

    def clear(self) -> None:
        self.cleared = True


def test_stamps_periodically_and_stops() -> None:
    fake = FakeLiveness()
    clock = iter(range(1, 10**6))
    s = LivenessStamper(fake, 0.01, clock_ns=lambda: next(clock))  # type: ignore[arg-type]
    s.start()
    assert fake.two.wait(5)
    s.stop()
    n = len(fake.stamps)
    assert not s.running and not fake.cleared
    assert fake.stamps == sorted(fake.stamps) and n >= 2


def test_clear_zeroes_the_stamp() -> None:
    fake = FakeLiveness()
    s = LivenessStamper(fake, 0.01)  # type: ignore[arg-type]
    s.start()
    s.clear()
    assert fake.cleared and not s.running


def test_a_failing_write_is_reported_and_the_loop_survives() -> None:
    errors: list[Exception] = []
    seen = threading.Event()

    class Broken(FakeLiveness):
        def stamp(self, now_ns: int) -> None:
            raise OSError(1, "Operation not permitted")

    def on_error(e: Exception) -> None:
        errors.append(e)
        if len(errors) >= 2:
            seen.set()

    s = LivenessStamper(Broken(), 0.01, on_error=on_error)  # type: ignore[arg-type]
    s.start()
    assert seen.wait(5)
    s.stop()
    assert isinstance(s.last_error, OSError)


def test_a_closed_gate_lets_the_stamp_age_out() -> None:
    fake = FakeLiveness()
    open_gate = threading.Event()
    asked = threading.Event()

    def gate() -> bool:
        asked.set()
        return open_gate.is_set()

    s = LivenessStamper(fake, 0.01, gate=gate)  # type: ignore[arg-type]
    s.start()
    assert asked.wait(5)
    assert fake.stamps == []
    open_gate.set()
    assert fake.two.wait(5)
    s.stop()
