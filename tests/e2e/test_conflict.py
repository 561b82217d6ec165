"""VIP conflict detection in the lab, on the real control plane: a foreign host (a plain namespace
on the LAN with a Service's VIP as a static address, `l2lab foreign add`) is reported by the
holder as a Warning Event on the Service, its ``l2announcer.io/Conflict`` condition, the
``l2announcer_vip_conflicts`` metric and a ``conflicts`` row (``l2dbg statedb conflicts``);
removing it clears them. Before that, and across a planned handover and a crash of the holder,
the cluster's own nodes are never reported.

Detection times are printed (docs/benchmarks.md, "VIP conflict detection"); they are measured,
not asserted: the waits only fail when something never happens.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from common.tables.conflicts import CONFLICTS, Conflict
from lab import lab
from lab.foreign import FOREIGN_MAC
from lab.inventory import FAST_TIMERS, LabState
from lab.lab import METRICS_PORT
from statedb.readonly import ReadOnlyDatabase
from tests.e2e import test_lab
from tests.e2e.lab_extras import holder_of, l2lab, until
from tests.e2e.test_lab import up

lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(240)

SERVICE = "service-1"
CONDITION = "l2announcer.io/Conflict"
SPARE = "198.51.100.250"  # the foreign host's own address, no VIP


def conflict_rows(state: LabState, node: str) -> list[Conflict]:
    """The node's conflicts table, read from its state database as l2dbg does."""
    db = ReadOnlyDatabase.open(state.node_state_dir(node) / "statedb.sqlite")
    try:
        with db.snapshot() as snap:
            return snap.rows(CONFLICTS) if snap.has_table(CONFLICTS) else []
    finally:
        db.close()


def metric(state: LabState, node: str, vip: str) -> float | None:
    out = lab.run_in(
        state, node, ["curl", "-s", "-m", "2", f"http://127.0.0.1:{METRICS_PORT}/metrics"]
    )
    m = re.search(
        rf'^l2announcer_vip_conflicts\{{interface="eth0",ip="{re.escape(vip)}"\}} (\S+)$',
        out,
        re.M,
    )
    return float(m.group(1)) if m else None


@functools.cache
def _core(kubeconfig: str) -> Any:
    """The lab's API as its admin, through the Python client: a request costs milliseconds where
    a kubectl process costs a few hundred, which would blur the times measured."""
    return kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    )


def condition(state: LabState) -> dict[str, Any] | None:
    svc = _core(str(state.admin_kubeconfig)).read_namespaced_service(SERVICE, "default")
    for c in (svc.status and svc.status.conditions) or []:
        if c.type == CONDITION:
            return {"status": c.status, "reason": c.reason, "message": c.message}
    return None


def events(state: LabState, reason: str) -> list[dict[str, Any]]:
    found = _core(str(state.admin_kubeconfig)).list_namespaced_event(
        "default", field_selector=f"involvedObject.name={SERVICE},reason={reason}"
    )
    return [{"name": e.metadata.name, "type": e.type, "message": e.message} for e in found.items]


def first_times(
    checks: dict[str, Callable[[], bool]], start: float, timeout: float
) -> dict[str, float]:
    """Poll every check until all have held once; seconds from ``start`` to the first time each
    held (so at most one poll round late)."""
    seen: dict[str, float] = {}
    while len(seen) < len(checks):
        assert time.monotonic() - start < timeout, (
            f"not within {timeout}s: {set(checks) - set(seen)}"
        )
        for what, check in checks.items():
            if what not in seen and check():
                seen[what] = time.monotonic() - start
        time.sleep(0.02)
    return seen


def no_conflict_anywhere(state: LabState) -> None:
    for node in state.node_states:
        assert conflict_rows(state, node) == [], node


def test_a_foreign_host_with_the_vip_is_reported_and_cleared(lab_name: str) -> None:
    state = up(lab_name, nodes=2, services=1, timers=FAST_TIMERS)
    vip = state.vips()[SERVICE]
    holder = holder_of(state, SERVICE)
    assert holder in state.node_states

    # A host on the LAN that does not hold the VIP is nobody's business; and our own nodes are
    # not foreign: a planned handover and a crash of the holder.
    print(l2lab(lab_name, "foreign", "add", SPARE).strip())
    l2lab(lab_name, "agent", "stop", holder)
    until(lambda: holder_of(state, SERVICE) not in ("", holder), "a new holder", 20)
    new = holder_of(state, SERVICE)
    l2lab(lab_name, "agent", "start", holder)
    time.sleep(4)  # the claim grace and three probe intervals
    no_conflict_anywhere(state)
    l2lab(lab_name, "agent", "kill", new)
    until(lambda: holder_of(state, SERVICE) not in ("", new), "a holder after the crash", 20)
    holder = holder_of(state, SERVICE)
    l2lab(lab_name, "agent", "start", new)
    time.sleep(4)
    no_conflict_anywhere(state)
    assert condition(state) is None  # nothing to say: a clean claim writes nothing

    # The foreign host takes the VIP.
    added_wall = time.time()
    start = time.monotonic()
    print(l2lab(lab_name, "foreign", "add", vip).strip())  # (l2lab's own start-up included)

    def row_present() -> bool:
        return any(r.foreign_mac == FOREIGN_MAC for r in conflict_rows(state, holder))

    def event_present() -> bool:
        return any(FOREIGN_MAC in e["message"] for e in events(state, "VIPConflict"))

    def condition_true() -> bool:
        c = condition(state)
        return c is not None and c["status"] == "True" and FOREIGN_MAC in c["message"]

    raised = first_times(
        {
            "row": row_present,
            "metric": lambda: metric(state, holder, vip) == 1.0,
            "event": event_present,
            "condition": condition_true,
        },
        start,
        timeout=30,
    )
    (row,) = [r for r in conflict_rows(state, holder) if r.foreign_mac == FOREIGN_MAC]
    assert row.ip == vip and row.network_interface == "eth0"
    assert row.services == (f"default/{SERVICE}",)
    assert row.defences >= 1
    print(f"detected: first_seen {row.first_seen - added_wall:.3f}s after the host was added; "
          + ", ".join(f"{k} {v:.2f}s" for k, v in raised.items()))  # fmt: skip
    (warning,) = [e for e in events(state, "VIPConflict") if FOREIGN_MAC in e["message"]]
    assert warning["type"] == "Warning"
    print(l2lab(lab_name, "exec", holder, "--", "l2dbg", "statedb", "conflicts"))
    print(warning["message"])
    # Only the holder judges: the other node announces nothing and reports nothing.
    for node in state.node_states:
        if node != holder:
            assert conflict_rows(state, node) == [], node

    # The foreign host lets it go: everything clears.
    start = time.monotonic()
    print(l2lab(lab_name, "foreign", "remove", vip).strip())
    cleared = first_times(
        {
            "row": lambda: not row_present(),
            "metric": lambda: metric(state, holder, vip) is None,
            "event": lambda: bool(events(state, "VIPConflictResolved")),
            "condition": lambda: (condition(state) or {}).get("status") == "False",
        },
        start,
        timeout=30,
    )
    print("cleared: " + ", ".join(f"{k} {v:.2f}s" for k, v in cleared.items()))
    assert holder_of(state, SERVICE) == holder  # a conflict never moves the lease

    # The holder crashes mid-conflict, and the foreign host lets the VIP go meanwhile: the next
    # holder's first look corrects the condition the crashed one left True.
    l2lab(lab_name, "foreign", "add", vip)
    until(condition_true, "Conflict=True again", 20)
    l2lab(lab_name, "agent", "kill", holder)
    l2lab(lab_name, "foreign", "remove", vip)
    until(lambda: holder_of(state, SERVICE) not in ("", holder), "a holder after the crash", 20)
    successor = holder_of(state, SERVICE)
    until(lambda: (condition(state) or {}).get("status") == "False", "Conflict=False", 20)
    final = condition(state)
    assert final is not None and final["reason"] == "NoConflict"
    assert final["message"] == f"no other host answers for {vip} on eth0 (node {successor})"
    assert "removed foreign host" in l2lab(lab_name, "foreign", "remove")
