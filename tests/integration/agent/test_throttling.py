"""A throttled client (issue 5): with ``k8s-client-qps=5`` (burst 10) and 100 Services the agents
log client-go's throttling line and nothing fails: every Service ends up announced by exactly one
node, and the logs hold no errors.

The timers follow the seed's sizing rule, QPS = services / renew deadline (5 = 100 / 20 s): with
the defaults (5 s) a holder of a third of the leases needs more than three times the rate, and the
reference's documented symptom, leases lost and retaken, is what one gets. Start-up is the
hardest part: each agent campaigns for all 100 leases at once, so requests queue in the limiter
for up to ~20 s while the first leases taken must already be renewed."""

from __future__ import annotations

import re

from tests.integration.agent.cluster import Cluster, settles

NODES = ("node1", "node2", "node3")
SERVICES = 100
TIMERS = ("30s", "20s", "5s")
RATE = ("--k8s-client-qps=5", "--k8s-client-burst=10")
THROTTLED = re.compile(
    r'level=info msg="Waited for [0-9.]+m?s due to client-side throttling, not priority and '
    r'fairness, request: (GET|PUT|POST|PATCH|DELETE):https://127\.0\.0\.1:\d+/[^"]+" subsys=klog'
)


def test_a_throttled_client_logs_the_wait_and_nothing_fails(cluster: Cluster) -> None:
    ip_of = cluster.services(
        SERVICES, lambda i: f"198.51.{100 + i // 200}.{i % 200 + 10}", app="demo"
    )
    ips = list(ip_of.values())
    cluster.watch_for_overlaps(ips)
    for node in NODES:
        cluster.start_agent(node, TIMERS, RATE)
    # While the start-up backlog drains, leases may change hands (never two holders); then it
    # settles, and stays so at 5 requests per second per node (each holder renews its third of
    # the leases within the renew deadline).
    settles(lambda: cluster.each_announced_once(ips), 5.0, 150, "every service announced once")
    cluster.sampler.stop()
    assert cluster.overlaps == []

    logs = {node: cluster.log_text(node) for node in NODES}
    throttled = [line for text in logs.values() for line in text.splitlines() if "Waited" in line]
    assert throttled, "no throttling line"
    assert [line for line in throttled if not THROTTLED.search(line)] == []
    assert any("/leases/cilium-l2announce-default-service-" in line for line in throttled)
    bad = [
        line
        for text in logs.values()
        for line in text.splitlines()
        if re.search(r"level=(error|fatal|warning)|Traceback", line)
    ]
    assert bad == []
    assert all(proc.poll() is None for proc in cluster.agents.values())
    failed = [r for r in cluster.log.query(status=(0, 403, 500, 503)) if r.user != "admin"]
    assert failed == []
