"""Several real l2agent processes against the API test server (issue 5's scenarios)."""

from __future__ import annotations

import signal
import time

from tests.integration.agent.cluster import DEFAULT, FAST, Cluster, until

LEASE = "cilium-l2announce-default-service-{}"
SEED_MSG = (
    "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
)


def _services(c: Cluster, n: int) -> list[str]:
    c.policy("policy1", {"loadBalancerIPs": True, "interfaces": ["^lo$"]})
    ips = []
    for i in range(1, n + 1):
        ip = f"198.51.100.{10 + i}"
        c.service(f"service-{i}", ip, app="demo")
        ips.append(ip)
    return ips


def test_each_service_is_announced_by_exactly_the_lease_holder(cluster: Cluster) -> None:
    ips = _services(cluster, 5)
    for node in ("node1", "node2", "node3"):
        cluster.start_agent(node)
    cluster.watch_for_overlaps(ips)
    for i, ip in enumerate(ips, start=1):
        until(lambda ip=ip: len(cluster.announcers(ip)) == 1, 30, f"{ip} announced")
        (who,) = cluster.announcers(ip)
        assert cluster.holder(LEASE.format(i)) == who
    time.sleep(1.0)
    assert cluster.overlaps == []


def test_sigterm_hands_over_within_half_a_second_with_default_timers(cluster: Cluster) -> None:
    (ip,) = _services(cluster, 1)
    for node in ("node1", "node2", "node3"):
        cluster.start_agent(node, DEFAULT)
    cluster.watch_for_overlaps([ip])
    until(lambda: len(cluster.announcers(ip)) == 1, 30, "announced")
    (holder,) = cluster.announcers(ip)
    time.sleep(1.0)  # followers are watching, not polling
    cluster.signal(holder, signal.SIGTERM)
    took = until(lambda: bool(set(cluster.announcers(ip)) - {holder}), 10, "taken over")
    assert cluster.holder(LEASE.format(1)) not in ("", holder)
    assert took < 0.5, f"handover took {took:.3f}s"
    cluster.agents[holder].wait(timeout=5)
    assert cluster.agents[holder].returncode == 0
    assert cluster.overlaps == []


def test_sigkill_fails_over_within_lease_duration_plus_two_retry_periods(cluster: Cluster) -> None:
    (ip,) = _services(cluster, 1)
    for node in ("node1", "node2", "node3"):
        cluster.start_agent(node, FAST)
    cluster.watch_for_overlaps([ip])
    until(lambda: len(cluster.announcers(ip)) == 1, 30, "announced")
    (holder,) = cluster.announcers(ip)
    time.sleep(1.0)
    cluster.signal(holder, signal.SIGKILL)
    cluster.agents[holder].wait(timeout=5)
    took = until(lambda: len(cluster.announcers(ip)) == 1, 15, "failed over")
    assert took <= 3.0 + 2 * 0.2 + 0.5, f"failover took {took:.2f}s"
    assert cluster.overlaps == []


def test_the_seeds_invalid_policy_shows_the_seeds_condition_until_fixed(cluster: Cluster) -> None:
    cluster.policy(
        "policy1",
        {
            "loadBalancerIPs": True,
            "serviceSelector": {"matchExpressions": [{"key": "something", "operator": "NotIn"}]},
        },
    )
    cluster.start_agent("node1")

    def conditions() -> list[dict[str, object]]:
        obj = cluster.custom.get_cluster_custom_object(
            "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", "policy1"
        )
        return list((obj.get("status") or {}).get("conditions") or [])

    until(lambda: bool(conditions()), 20, "condition written")
    (cond,) = conditions()
    assert {k: cond[k] for k in ("type", "status", "reason", "message", "observedGeneration")} == {
        "type": "io.cilium/bad-service-selector",
        "status": "True",
        "reason": "error",
        "message": SEED_MSG,
        "observedGeneration": 1,
    }
    cluster.custom.patch_cluster_custom_object(
        "cilium.io",
        "v2alpha1",
        "ciliuml2announcementpolicies",
        "policy1",
        # JSON patch: a merge patch would keep the bad expression (the client drops nulls).
        [
            {
                "op": "replace",
                "path": "/spec/serviceSelector",
                "value": {"matchLabels": {"app": "demo"}},
            }
        ],
        _content_type="application/json-patch+json",
    )
    until(lambda: conditions()[0]["status"] == "False", 20, "condition cleared")
    assert conditions()[0]["message"] == ""
    assert conditions()[0]["observedGeneration"] == 2
