"""externalTrafficPolicy Local in the lab, on the real control plane and datapath: a Local Service
with one backend on node3 is announced by node3 only; when the backend moves to node1 the lease
follows (node3's endpoints gate refuses, node3 hands over as on a planned stop, node1 takes it),
and the client's ARP answers move from node3's MAC to node1's, never two at once. With no node
that can have a local endpoint (endpoints without nodeName) nobody announces it, and the
Service's Announced condition says why; with no ready endpoint anywhere it stays announced
(announce-without-endpoints defaults to true).

The backends are the lab's own EndpointSlice (``l2lab backend``). Each move's time, from the
slice's update to the new holder's acquireTime on the Lease, and the client's longest silence
are printed for docs/benchmarks.md, not asserted; with the fast timers (3s/1s/200ms) and the
reference's (15s/5s/2s): the move is driven by the watches, not by the retry period.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
from kubernetes import client, config

from common.leases import lease_name
from lab import backends, lab
from lab.inventory import LabState, node_mac
from tests.e2e import test_lab
from tests.e2e.lab_extras import arpwatch, holder_of, l2lab, summary, until
from tests.e2e.test_lab import FAST, REFERENCE, arping, up

lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(240)

SERVICE = "service-1"
MOVES = 6


def contest(state: LabState, node: str) -> dict[str, str]:
    """The node's ``l2-contest`` row of the Service, as ``l2dbg -o json`` prints it."""
    out = lab.run_in(state, node, ["l2dbg", "statedb", "l2-contest", "-o", "json"])
    rows = [r for r in json.loads(out) if r["Name"] == SERVICE]
    return rows[0] if rows else {}


def lease(state: LabState) -> dict[str, Any]:
    out = lab.kubectl(state, "-n", "kube-system", "get", "lease",
                      lease_name("default", SERVICE), "-o", "json")  # fmt: skip
    spec: dict[str, Any] = json.loads(out)["spec"]
    return spec


def acquired_at(state: LabState) -> float:
    """The Lease's acquireTime, as seconds since the epoch (agents and test share the clock)."""
    return datetime.fromisoformat(lease(state)["acquireTime"].replace("Z", "+00:00")).timestamp()


def discovery_api(state: LabState) -> client.DiscoveryV1Api:
    """The lab's admin, in-process: a move timed from its request, not from a kubectl start."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(state.admin_kubeconfig), client_configuration=configuration
    )
    return client.DiscoveryV1Api(client.ApiClient(configuration))


def move_backend(api: client.DiscoveryV1Api, service: str, node: str) -> float:
    """Replace the lab's slice of ``service`` with one ready endpoint on ``node``, as
    ``l2lab backend`` writes it; returns the wall-clock time just before the request."""
    name = backends.slice_name(service)
    old: Any = api.read_namespaced_endpoint_slice(name, backends.NAMESPACE)
    body = backends.endpoint_slice(service, [node])
    body["metadata"]["resourceVersion"] = old.metadata.resource_version
    t0 = time.time()
    api.replace_namespaced_endpoint_slice(name, backends.NAMESPACE, body)  # type: ignore[arg-type]
    return t0


def announced_condition(state: LabState) -> tuple[str, str, str]:
    out = lab.kubectl(state, "get", "service", SERVICE, "-o", "json")
    for c in json.loads(out)["status"].get("conditions") or []:
        if c["type"] == "l2announcer.io/Announced":
            return (c["status"], c["reason"], c["message"])
    return ("", "", "")


@pytest.mark.parametrize("timers", [FAST, REFERENCE], ids=["fast", "reference"])
def test_a_local_service_is_announced_where_its_backend_is(
    lab_name: str, timers: tuple[str, str, str]
) -> None:
    state = up(lab_name, nodes=3, services=1, timers=timers)
    vip = state.vips()[SERVICE]
    mac = {n: node_mac(s.index) for n, s in state.node_states.items()}
    print(l2lab(lab_name, "service", SERVICE, "--etp", "local"))
    print(l2lab(lab_name, "backend", SERVICE, "node3"))
    until(lambda: holder_of(state, SERVICE) == "node3", "node3 holds the lease", 15)
    until(lambda: arping(state, vip, 1) == [mac["node3"]], "node3 answers ARP", 10)
    for node in ("node1", "node2"):
        row = contest(state, node)
        assert (row["State"], row["Reason"]) == ("refused", "no-local-endpoint"), row
    print(l2lab(lab_name, "exec", "node1", "--", "l2dbg", "statedb", "endpointslices"))
    print(l2lab(lab_name, "exec", "node1", "--", "l2dbg", "statedb", "l2-contest"))

    # The backend moves back and forth between node3 and node1; the client watches throughout.
    watcher = arpwatch(state, vip, duration=MOVES * 2.5 + 1.0)
    time.sleep(0.5)
    api = discovery_api(state)
    moves = []
    old = "node3"
    for _ in range(MOVES):
        new = "node1" if old == "node3" else "node3"
        t0 = move_backend(api, SERVICE, new)
        until(lambda: holder_of(state, SERVICE) == new, f"{new} holds the lease", 10)  # noqa: B023
        moves.append(acquired_at(state) - t0)
        old = new
        time.sleep(max(0.0, t0 + 2.5 - time.time()))
    seen = summary(watcher)
    print(
        f"backend moved -> new holder acquired the lease (timers {'/'.join(timers)}): "
        + ", ".join(f"{m:.3f}s" for m in moves)
    )
    print(f"client's view of {MOVES} moves (timers {'/'.join(timers)}): {seen}")
    assert seen["double"] == 0, seen
    expected = [mac["node3"] if i % 2 == 0 else mac["node1"] for i in range(MOVES + 1)]
    assert seen["macs"] == expected, seen
    assert arping(state, vip, 1) == [mac[old]]
    # The old holder's "stopped announcing" and the new holder's "announcing" race: the
    # condition must end saying the Service is announced.
    until(
        lambda: announced_condition(state)[:2] == ("True", "Announcing"),
        "the Announced condition says it is announced",
        5,
    )

    # No ready endpoint anywhere: still announced (announce-without-endpoints is true), from
    # where it was; no node refuses it for its endpoints (the lab balances placement, so a node
    # may leave it to the holder and its successor: placed-elsewhere).
    print(l2lab(lab_name, "backend", SERVICE, old, "--condition", "not-ready"))
    until(
        lambda: all(
            contest(state, n).get("State") in ("announcing", "standby")
            or contest(state, n).get("Reason") == "placed-elsewhere"
            for n in ("node1", "node2", "node3")
        ),
        "no node refuses it for its endpoints",
        10,
    )
    assert holder_of(state, SERVICE) == old
    assert arping(state, vip, 1) == [mac[old]]

    # Endpoints without nodeName: no node has a local one; nobody announces it, and the Service
    # says why.
    print(l2lab(lab_name, "backend", SERVICE, "node2", "--no-node-name"))
    until(
        lambda: announced_condition(state)[:2] == ("False", "EndpointsWithoutNode"),
        "the Announced condition says why",
        10,
    )
    until(lambda: holder_of(state, SERVICE) == "", "the lease released", 10)
    assert arping(state, vip, 2) == []
    for node in ("node1", "node2", "node3"):
        row = contest(state, node)
        assert (row["State"], row["Reason"]) == ("refused", "endpoints-without-node"), row
    print(l2lab(lab_name, "exec", "node1", "--", "l2dbg", "statedb", "l2-contest"))
    print(l2lab(lab_name, "kubectl", "--", "get", "service", SERVICE, "-o",
                "jsonpath={.status.conditions}"))  # fmt: skip
