"""Lease economy mode in the lab (l2-announcements-lease-mode=economy), at the seed's fast timers.

Six Services on three nodes. At steady state the Service leases are not written at all (their
resourceVersions stay) while every node's heartbeat is renewed, and `kubectl get lease` still
names each Service's holder. The agent of the node holding the most is killed (SIGKILL): the
others fence its heartbeat once it expires and take its Services over. It starts again and takes
its heartbeat back (and, with placement on, its share through planned handovers). Through the
crash and the rejoin the client asks for every VIP twenty times a second, and no request is ever
answered by two MACs.

The failover time and the client's longest gap are printed for docs/benchmarks.md, not asserted.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from common.leases import heartbeat_name, is_service_lease
from lab import lab
from lab.inventory import FAST_TIMERS, LabState
from tests.e2e import test_lab
from tests.e2e.lab_extras import arpwatch, l2lab, summary, until

lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(300)

SERVICES = 6


def lease_objects(state: LabState) -> dict[str, tuple[str, str]]:
    """Every lease in kube-system: name -> (holder, resourceVersion)."""
    out = lab.kubectl(state, "-n", "kube-system", "get", "lease", "-o", "json")
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return {
        i["metadata"]["name"]: (
            (i.get("spec") or {}).get("holderIdentity") or "",
            i["metadata"]["resourceVersion"],
        )
        for i in items
    }


def node_liveness(state: LabState, node: str) -> dict[str, str]:
    """``l2dbg statedb l2-nodes`` on ``node``: node -> state."""
    out = lab.run_in(state, node, ["l2dbg", "statedb", "l2-nodes", "-o", "json"])
    return {r["Node"]: r["State"] for r in json.loads(out)}


def test_economy_mode_failover_by_sigkill_never_answers_with_two_macs(lab_name: str) -> None:
    lease, renew, retry = FAST_TIMERS
    l2lab(
        lab_name, "up", "--nodes", "3", "--services", str(SERVICES), "--lease-mode", "economy",
        "--lease-duration", lease, "--renew-deadline", renew, "--retry-period", retry,
        timeout=240,
    )  # fmt: skip
    state = LabState.load(lab_name)
    assert state is not None and state.phase == "up" and state.lease_mode == "economy"
    nodes = set(state.node_names())

    # kubectl get lease names each Service's holder; the Service leases are not renewed.
    until(lambda: len(lab.leases(state)) == SERVICES, "a lease per Service", 30)
    # Once placement's start-up moves (planned handovers, which write the leases they move) are
    # over: ten retry periods in which no Service lease is written, within five tries.
    for _ in range(5):
        before = lease_objects(state)
        time.sleep(10 * 0.2 + 1.0)
        after = lease_objects(state)
        services = {n: v for n, v in after.items() if is_service_lease(n)}
        still = {n for n in services if before.get(n) == after[n]}
        if still == set(services):
            break
    assert len(services) == SERVICES and {h for h, _ in services.values()} <= nodes
    assert still == set(services), "Service leases are written at steady state"
    for node in nodes:
        hb = heartbeat_name(node)
        assert after[hb][0] == node and after[hb][1] != before[hb][1], f"{hb} not renewed"
    assert node_liveness(state, "node1") == dict.fromkeys(nodes, "alive")

    watched = sorted(set(state.vips().values()))
    victim = Counter(h for h, _ in services.values()).most_common(1)[0][0]
    lost = {n for n, (h, _) in services.items() if h == victim}
    watcher = arpwatch(state, watched, duration=25, interval=0.05)
    time.sleep(1.0)
    l2lab(lab_name, "agent", "kill", victim)
    alive = nodes - {victim}
    took = until(
        lambda: all(h in alive for h in lab.leases(state).values()), "failover", timeout=30
    )
    other = sorted(alive)[0]
    seen_by_other = node_liveness(state, other)
    print(f"killed {victim} holding {len(lost)} Service(s): moved in {took:.2f}s; {seen_by_other}")
    assert seen_by_other[victim] in ("released", "expired")

    time.sleep(2.0)
    l2lab(lab_name, "agent", "start", victim)
    until(
        lambda: lease_objects(state)[heartbeat_name(victim)][0] == victim,
        "the restarted node takes its heartbeat back",
        timeout=30,
    )
    watcher.wait(timeout=60)  # its whole duration
    seen = summary(watcher)
    print(f"client through the crash and the rejoin: {seen}")
    assert seen["double"] == 0, "never two MACs for one request"
    assert all(h in nodes for h in lab.leases(state).values())
