"""Several real l2agent processes against the real apiserver (issue 5's scenarios)."""

from __future__ import annotations

import signal
import time
from functools import partial
from typing import Any

from tests.integration.agent.cluster import (
    DEFAULT,
    FAST,
    SERVICE_NAMESPACE_LABEL,
    Cluster,
    check_leases,
    last_renew,
    lease_history,
    takeover,
    until,
)

SEED_MSG = (
    "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
)


def _services(c: Cluster, n: int) -> list[str]:
    return list(c.services(n, app="demo").values())


def test_each_service_is_announced_by_exactly_the_lease_holder(cluster: Cluster) -> None:
    ips = _services(cluster, 5)
    for node in ("node1", "node2", "node3"):
        cluster.start_agent(node)
    cluster.watch_for_overlaps(ips)
    for i, ip in enumerate(ips, start=1):
        until(partial(lambda ip: len(cluster.announcers(ip)) == 1, ip), 30, f"{ip} announced")
        (who,) = cluster.announcers(ip)
        assert cluster.holder(cluster.lease(i)) == who
    time.sleep(1.0)
    assert cluster.overlaps == []


def test_sigterm_hands_over_on_release_without_waiting_for_expiry(cluster: Cluster) -> None:
    """With the default timers (15 s lease) a planned stop releases the lease and a follower,
    watching, takes it on the release. How fast is bench/leases.py's (target 0.5 s)."""
    (ip,) = _services(cluster, 1)
    lease = cluster.lease(1)
    for node in ("node1", "node2", "node3"):
        cluster.start_agent(node, DEFAULT)
    cluster.watch_for_overlaps([ip])
    until(lambda: len(cluster.announcers(ip)) == 1, 30, "announced")
    (holder,) = cluster.announcers(ip)
    time.sleep(1.0)  # followers are watching, not polling
    cluster.signal(holder, signal.SIGTERM)
    took = until(lambda: bool(set(cluster.announcers(ip)) - {holder}), 30, "taken over")
    print(f"handover took {took:.3f}s")
    assert cluster.holder(lease) not in ("", holder)
    cluster.agents[holder].wait(timeout=5)
    assert cluster.agents[holder].returncode == 0
    assert cluster.overlaps == []

    writes = lease_history(cluster, [lease])[lease]
    released, taken = takeover(writes, holder)
    assert released is not None, f"{holder} did not release on SIGTERM: {writes}"
    renewed = last_renew(writes, holder, released.time)
    assert taken.time < renewed.time + renewed.duration, "taken after expiry, not on the release"
    assert check_leases({lease: writes}) == []


def test_sigkill_fails_over_once_the_lease_expires(cluster: Cluster) -> None:
    """A crashed holder releases nothing: another node takes the lease only once it expired
    (check_leases), and then does. How fast is bench/leases.py's (target lease duration + 2 x
    retry period)."""
    (ip,) = _services(cluster, 1)
    lease = cluster.lease(1)
    for node in ("node1", "node2", "node3"):
        cluster.start_agent(node, FAST)
    cluster.watch_for_overlaps([ip])
    until(lambda: len(cluster.announcers(ip)) == 1, 30, "announced")
    (holder,) = cluster.announcers(ip)
    time.sleep(1.0)
    cluster.signal(holder, signal.SIGKILL)
    cluster.agents[holder].wait(timeout=5)
    took = until(lambda: len(cluster.announcers(ip)) == 1, 30, "failed over")
    print(f"failover took {took:.2f}s")
    assert cluster.overlaps == []
    writes = lease_history(cluster, [lease])[lease]
    released, taken = takeover(writes, holder)
    assert released is None, f"a killed agent released its lease: {writes}"
    assert taken.holder == cluster.announcers(ip)[0]
    assert check_leases({lease: writes}) == []


def test_the_seeds_invalid_policy_shows_the_seeds_condition_until_fixed(cluster: Cluster) -> None:
    policy = cluster.policy(
        "policy1",
        {
            "loadBalancerIPs": True,
            "serviceSelector": {"matchExpressions": [{"key": "something", "operator": "NotIn"}]},
        },
    )
    cluster.start_agent("node1")

    def conditions() -> list[dict[str, object]]:
        obj: Any = cluster.custom.get_cluster_custom_object(
            "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", policy
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
        policy,
        # JSON patch: a merge patch would keep the bad expression (the client drops nulls).
        [
            {
                "op": "replace",
                "path": "/spec/serviceSelector",
                "value": {
                    "matchLabels": {"app": "demo", SERVICE_NAMESPACE_LABEL: cluster.namespace}
                },
            }
        ],
        _content_type="application/json-patch+json",
    )
    until(lambda: conditions()[0]["status"] == "False", 20, "condition cleared")
    assert conditions()[0]["message"] == ""
    assert conditions()[0]["observedGeneration"] == 2
