"""GarpSender: first packet synchronous, the rest scheduled, cancellable; errors reported."""

from __future__ import annotations

import threading
import time

import pytest

from bpf.garp import GarpError, GarpSender


class Recorder:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[str, int]] = []
        self.fail_after = fail_after
        self.done = threading.Event()
        self.want = 0

    def __call__(self, vip: str, ifindex: int) -> None:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            self.sent.append((vip, -1))
            if len(self.sent) >= self.want:
                self.done.set()
            raise GarpError(100, "failed to send ARP packet: [Errno 100] Network is down")
        self.sent.append((vip, ifindex))
        if len(self.sent) >= self.want:
            self.done.set()


def test_burst_sends_count_packets_first_one_synchronously() -> None:
    rec = Recorder()
    rec.want = 3
    s = GarpSender(3, 0.01, send=rec)
    s.start()
    try:
        s.announce("198.51.100.10", 2)
        assert rec.sent[:1] == [("198.51.100.10", 2)]  # before announce returned
        assert rec.done.wait(5)
        assert rec.sent == [("198.51.100.10", 2)] * 3
    finally:
        s.stop()


def test_first_packet_error_is_raised_and_nothing_is_scheduled() -> None:
    rec = Recorder(fail_after=0)
    s = GarpSender(3, 0.01, send=rec)
    with pytest.raises(GarpError, match="failed to send ARP packet"):
        s.announce("198.51.100.10", 2)
    assert s.pending() == 0
    s.stop()


def test_later_errors_go_to_on_error() -> None:
    errors: list[tuple[str, int, str]] = []
    got = threading.Event()

    def on_error(vip: str, ifindex: int, e: GarpError) -> None:
        errors.append((vip, ifindex, str(e)))
        got.set()

    s = GarpSender(2, 0.01, send=Recorder(fail_after=1), on_error=on_error)
    s.start()
    try:
        s.announce("198.51.100.10", 2)
        assert got.wait(5)
        assert errors[0][:2] == ("198.51.100.10", 2)
        assert "failed to send ARP packet" in errors[0][2]
    finally:
        s.stop()


def test_cancel_drops_the_rest_of_a_burst() -> None:
    rec = Recorder()
    s = GarpSender(3, 60.0, send=rec)
    try:
        s.announce("198.51.100.10", 2)
        assert s.pending() == 2
        s.cancel("198.51.100.10", 2)
        assert s.pending() == 0
        assert rec.sent == [("198.51.100.10", 2)]
    finally:
        s.stop()


def test_a_new_burst_replaces_a_pending_one() -> None:
    s = GarpSender(3, 60.0, send=Recorder())
    try:
        s.announce("198.51.100.10", 2)
        s.announce("198.51.100.10", 2)
        assert s.pending() == 2
    finally:
        s.stop()


@pytest.mark.parametrize(("count", "interval"), [(0, 0.5), (3, -1.0)])
def test_rejects_bad_settings(count: int, interval: float) -> None:
    with pytest.raises(ValueError):
        GarpSender(count, interval)


def test_the_agent_runs_the_scheduler_loop_as_a_job_and_its_stop_wakes_it() -> None:
    from agent.runtime import Job

    rec = Recorder()
    rec.want = 3
    s = GarpSender(3, 0.01, send=rec)
    job = Job("garp-sender", s.run, wake=s.wake)
    job.start()
    s.announce("198.51.100.10", 2)
    assert rec.done.wait(5)
    assert job.stop(timeout=5)
    s.close()
    assert s.sent == 3

    slow = GarpSender(2, 60.0, send=Recorder())
    job = Job("garp-sender", slow.run, wake=slow.wake)
    job.start()
    slow.announce("198.51.100.10", 2)
    assert slow.pending() == 1
    t0 = time.monotonic()
    assert job.stop(timeout=5)
    assert time.monotonic() - t0 < 1  # woken out of its 60 s wait
    slow.close()
    assert slow.pending() == 0
