"""Lease traffic at steady state does not grow with nodes (issue 5): followers watch
leases instead of polling them, so three agents and six agents make the same lease requests per
second (leaders renewing), at most services / retry period. Measured from the apiserver's audit
log over a window after the agents have settled.

What is judged here is why the traffic cannot grow: in both windows every lease request comes
from a lease's holder, none from a follower. The rates are printed; their difference (< 10 %) is
judged by bench/leases.py, where a busy machine slowing one window's renewals is not mistaken for
a failure."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.leases import is_service_lease
from common.tables.leases import LEASES
from tests.integration.agent.cluster import DEFAULT, Cluster, running_cluster, until
from tests.kube import Kube

SERVICES = 50
RETRY_PERIOD = 2.0  # DEFAULT's
WINDOW = 8.0  # seconds measured, four renew rounds
SETTLE = 3.0  # after the last agent is up and every service is announced
RATE = ("--k8s-client-qps=50", "--k8s-client-burst=100")  # services / renew deadline, doubled


@pytest.fixture
def cluster(kube: Kube, tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(kube, tmp_path, 6) as c:
        yield c


def _measure(c: Cluster) -> tuple[float, Counter[str]]:
    """Lease requests that arrived within a window, per second and by verb. The audit log holds a
    request once it ends, so the agents' lease watches (open for minutes) are not among them.
    Followers make none at steady state: every one comes from a holder."""
    start = time.time()
    time.sleep(WINDOW)
    time.sleep(0.5)  # the last requests of the window reach the audit log
    events = [e for e in c.agent_requests(start, "leases") if e.time < start + WINDOW]
    # With economy mode or placement every agent renews its own heartbeat lease too (one per
    # node, not per Service): counted apart, so the Service leases' rate is what is compared.
    events = [e for e in events if is_service_lease(e.name)]
    users = {e.user for e in events if e.verb != "watch"}
    holders = {c.user(c.holder(c.lease(i))) for i in range(1, SERVICES + 1)}
    assert users <= holders, f"lease requests from followers: {sorted(users - holders)}"
    return len(events) / WINDOW, Counter(e.verb for e in events)


def test_lease_requests_per_second_do_not_grow_with_followers(cluster: Cluster) -> None:
    ips = list(cluster.services(SERVICES, app="demo").values())
    for i in (1, 2, 3):
        cluster.start_agent(f"node{i}", DEFAULT, RATE)
    until(lambda: cluster.each_announced_once(ips), 60, "every service announced once")
    time.sleep(SETTLE)
    three, three_verbs = _measure(cluster)

    for i in (4, 5, 6):
        cluster.start_agent(f"node{i}", DEFAULT, RATE)
    # Settled: the newcomers have listed the leases (their watch is open from then on).
    until(
        lambda: all(
            sum(1 for x in cluster.rows(f"node{i}", LEASES) if is_service_lease(x.name)) == SERVICES
            for i in (4, 5, 6)
        ),
        30,
        "the new agents know every lease",
    )
    time.sleep(SETTLE)
    six, six_verbs = _measure(cluster)

    report = f"3 agents: {three:.2f}/s {dict(three_verbs)}; 6 agents: {six:.2f}/s {dict(six_verbs)}"
    print(report)
    assert three > 0 and six > 0, report
    # One renewal per lease per retry period, counted by arrival: a renewal that arrives late
    # puts two in one window's edge, hence the margin. Followers add nothing (checked above).
    limit = 1.2 * SERVICES / RETRY_PERIOD
    assert three <= limit and six <= limit, report
    assert cluster.each_announced_once(ips)
