"""Lease churn turns the elector's health Degraded, with its cause (agent/leases/churn.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent.leases.churn import ChurnMonitor, needed_qps
from agent.leases.election import Timings
from agent.leases.elector import Elector
from tests.unit.leases.fake_api import FakeLeaseAPI
from tests.unit.leases.test_elector import Recorder

LEASES = [f"cilium-l2announce-default-service-{i}" for i in range(1, 7)]


def flap(m: ChurnMonitor, start: float, rounds: int) -> float:
    """Every lease lost on its renew deadline and re-taken, ``rounds`` times."""
    t = start
    for _ in range(rounds):
        for lease in LEASES:
            m.acquired(lease, t)
        t += 1.2
        for lease in LEASES:
            m.lost(lease, "renew deadline passed", t)
        t += 0.3
    return t


def test_the_issues_case_names_client_side_throttling_with_the_numbers() -> None:
    # 6 Services pinned to one node, 3s/1s/200ms timers, the client default of 5 QPS.
    m = ChurnMonitor(renew_deadline=1.0, qps=5.0)
    now = flap(m, 1000.0, 3)
    assert m.problem(now) == (
        "lease churn in the last 1m0s: 18 lost, 12 re-acquired, 0 failed renewal(s); "
        "client-side throttling: 5 QPS below the 9 QPS that 6 leases at 1s renew deadline need"
    )
    assert needed_qps(6, 1.0) == 9 and needed_qps(50, 5.0) == 15


def test_steady_leadership_is_no_churn_and_old_churn_ages_out() -> None:
    m = ChurnMonitor(renew_deadline=1.0, qps=5.0)
    for lease in LEASES:
        m.acquired(lease, 1000.0)
    assert m.problem(1001.0) == ""
    now = flap(m, 1002.0, 2)
    assert m.problem(now) != ""
    assert m.problem(now + 61.0) == "", "nothing in the last minute"


def test_one_failover_or_giving_leases_up_is_not_churn() -> None:
    m = ChurnMonitor(renew_deadline=5.0, qps=5.0)
    m.acquired(LEASES[0], 1000.0)
    m.lost(LEASES[0], "renew deadline passed", 1010.0)  # one API blip ...
    m.acquired(LEASES[0], 1012.0)  # ... and back: 2 events, below the threshold
    for lease in LEASES:
        m.lost(lease, "no longer selected", 1013.0)
        m.lost(lease, "lease taken by nobody (released)", 1013.0)
    assert m.problem(1014.0) == ""


def test_the_cause_without_a_sizing_problem() -> None:
    m = ChurnMonitor(renew_deadline=1.0, qps=100.0)
    for i in range(3):
        m.renew_failed(LEASES[0], f"context deadline exceeded {i}", 1000.0 + i)
    assert m.problem(1003.0).endswith("last failed renewal: context deadline exceeded 2")
    m.waited(0.6, 1003.0)
    assert m.problem(1003.5).endswith(
        "client-side throttling: lease requests waited up to 600ms for the client rate limit "
        "(100 QPS)"
    )
    quiet = ChurnMonitor(renew_deadline=1.0)
    for lease in LEASES[:3]:
        quiet.lost(lease, "lease taken by node2", 1000.0)
    assert quiet.problem(1001.0).endswith(
        "renewals not answered within the 1s renew deadline (a slow API server?)"
    )


T = Timings(lease_duration=2.0, renew_deadline=0.8, retry_period=0.2)
NAME = "cilium-l2announce-default-svc"


@pytest.fixture
def api() -> FakeLeaseAPI:
    return FakeLeaseAPI()


@pytest.fixture
def elector(api: FakeLeaseAPI) -> Iterator[tuple[Elector, Recorder]]:
    rec = Recorder()
    e = Elector(api.client("node1"), "node1", T, rec, client_qps=5.0)
    api.observers.append(e.observe)
    e.start()
    yield e, rec
    e.stop(release_timeout=0.5)


def test_an_elector_whose_renewals_stall_reports_the_churn(
    elector: tuple[Elector, Recorder], api: FakeLeaseAPI
) -> None:
    e, rec = elector
    e.want(NAME, True)
    rec.wait_for(lambda: any(ev[2] for ev in rec.events))
    assert e.churn_problem() == ""
    api.hang_for.add("node1")  # renewals hang until their timeout: the leader stops on time
    rec.wait_for(lambda: not rec.events[-1][2])
    api.hang_for.clear()
    rec.wait_for(lambda: rec.events[-1][2])  # and takes its lease back
    deadline = time.monotonic() + 5
    while not e.churn_problem() and time.monotonic() < deadline:
        time.sleep(0.02)
    problem = e.churn_problem()
    assert problem.startswith("lease churn in the last 1m0s: 1 lost, 1 re-acquired, ")
    assert "last failed renewal: context deadline exceeded" in problem
