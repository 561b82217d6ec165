"""What a new user trips over (issue 13), with real l2agent processes on the real apiserver:
a typo in a working policy, enable-external-ips, policy errors in the log, "Announcing" with
nothing announced, and leases that flap while every module says OK."""

from __future__ import annotations

import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from common.tables import HEALTH
from tests.integration.agent.cluster import FAST, Cluster, until

POLICY = ("cilium.io", "v2alpha1", "ciliuml2announcementpolicies")
NOT_IN_WITHOUT_VALUES = [{"key": "x", "operator": "NotIn"}]
REGEX_ERROR = "error parsing regexp: missing closing ]: `[0-`"


def patch_policy(c: Cluster, name: str, spec: dict[str, Any]) -> None:
    c.custom.patch_cluster_custom_object(*POLICY, c.kube.name(name), {"spec": spec})


def condition(c: Cluster, name: str, ctype: str) -> tuple[str, str] | None:
    """(status, message) of the policy's condition ``ctype``, None while it has none."""
    obj: Any = c.custom.get_cluster_custom_object(*POLICY, c.kube.name(name))
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return cond["status"], cond.get("message", "")
    return None


def health(c: Cluster, node: str, module: str) -> str:
    """``level: message`` of ``module`` in ``node``'s health table ("" until published)."""
    rows = [h for h in c.rows(node, HEALTH) if h.module == module]
    return f"{rows[0].level}: {rows[0].message}" if rows else ""


def warnings(c: Cluster, node: str, text: str) -> list[str]:
    return [
        line for line in c.log_text(node).splitlines() if "level=warning" in line and text in line
    ]


def selected(c: Cluster, node: str, n: int) -> bool:
    """Whether ``node``'s announcer has evaluated the policies and selects ``n`` Services."""
    return f"{n} service(s) selected" in health(c, node, "l2-announcer")


def warned(c: Cluster, node: str, text: str) -> bool:
    return bool(warnings(c, node, text))


def events(c: Cluster, service: str) -> list[Any]:
    return [
        e
        for e in c.core.list_namespaced_event(
            c.namespace, field_selector=f"involvedObject.name={service}"
        ).items
        if e.reason == "Announcing"
    ]


def passes(c: Cluster, n: int = 3) -> None:
    """Let every agent's announcer make ``n`` more passes: each change of a Service (here the
    ``nudge`` Service, which no policy selects) is one."""
    for _ in range(n):
        stamp = str(time.monotonic_ns())
        c.core.patch_namespaced_service(
            "nudge", c.namespace, {"metadata": {"labels": {"pass": stamp}}}
        )
        time.sleep(0.3)


def one_agent_one_service(cluster: Cluster, interfaces: list[str]) -> None:
    """policy1 with ``interfaces`` over service-1's load balancer IP, then node1's agent."""
    cluster.policy("policy1", {"loadBalancerIPs": True, "interfaces": interfaces})
    cluster.service("service-1", "198.51.100.11")
    nudge_service(cluster)
    cluster.start_agent("node1", FAST)


def nudge_service(c: Cluster) -> None:
    c.core.create_namespaced_service(
        c.namespace,
        {"metadata": {"name": "nudge"}, "spec": {"ports": [{"port": 80}]}},  # type: ignore[arg-type]
    )


# -- 1 and 3: a bad edit keeps announcing, and is logged once ------------------------------------


@pytest.mark.parametrize(
    ("field", "bad", "ctype"),
    [
        ("serviceSelector", {"matchExpressions": NOT_IN_WITHOUT_VALUES},
         "io.cilium/bad-service-selector"),
        ("nodeSelector", {"matchExpressions": NOT_IN_WITHOUT_VALUES},
         "io.cilium/bad-node-selector"),
        ("interfaces", ["eth[0-"], "io.cilium/bad-interface-regex"),
    ],
)  # fmt: skip
def test_a_bad_edit_of_a_working_policy_keeps_the_service_announced(
    cluster: Cluster, field: str, bad: Any, ctype: str
) -> None:
    (ip,) = cluster.services(1).values()
    nudge_service(cluster)
    for node in ("node1", "node2"):
        cluster.start_agent(node, FAST)
    until(lambda: len(cluster.announcers(ip)) == 1, 30, "announced")
    (holder,) = cluster.announcers(ip)
    for node in ("node1", "node2"):  # both have seen the valid version
        until(partial(selected, cluster, node, 1), 30, f"{node} selects service-1")
    cluster.watch_for_overlaps([ip])

    patch_policy(cluster, "policy1", {field: bad})
    until(lambda: (condition(cluster, "policy1", ctype) or ("",))[0] == "True", 30, "condition")
    passes(cluster)
    assert cluster.announcers(ip) == [holder], "the bad edit withdrew the Service"
    assert cluster.holder(cluster.lease(1)) == holder
    for node in ("node1", "node2"):
        found = warnings(cluster, node, 'msg="Error processing policy event"')
        assert len(found) == 1, f"{node}: {found}"
        assert f"condition={ctype}" in found[0]
        assert 'keeping="the last valid version (generation 1)"' in found[0]

    # Fixed (and the Service still announced): the condition goes to False.
    fix: Any = {
        "interfaces": {"interfaces": ["^lo$"]},
        "nodeSelector": {"nodeSelector": None},
        # the namespace label the cluster's policies carry stays
        "serviceSelector": {"serviceSelector": {"matchExpressions": None}},
    }[field]
    patch_policy(cluster, "policy1", fix)
    until(lambda: condition(cluster, "policy1", ctype) == ("False", ""), 30, "cleared")
    assert cluster.announcers(ip) == [holder]
    assert cluster.overlaps == []
    for node in ("node1", "node2"):
        until(partial(warned, cluster, node, "Policy condition cleared"), 10, f"{node}: the fix")


def test_an_agent_that_starts_with_only_an_invalid_policy_announces_nothing_and_says_so(
    cluster: Cluster,
) -> None:
    one_agent_one_service(cluster, ["eth[0-"])
    until(lambda: bool(warnings(cluster, "node1", "policy event")), 30, "the warning")
    passes(cluster)
    (line,) = warnings(cluster, "node1", "policy event")
    assert f'error="{REGEX_ERROR}"' in line
    assert "the policy is not applied" in line
    assert cluster.announced("node1") == set()
    assert cluster.holder(cluster.lease(1)) == ""


# -- 2. enable-external-ips ---------------------------------------------------------------------


def test_external_ips_are_announced_only_with_enable_external_ips(cluster: Cluster) -> None:
    cluster.policy("policy1", {"externalIPs": True, "interfaces": ["^lo$"]})
    cluster.core.create_namespaced_service(
        cluster.namespace,
        {
            "metadata": {"name": "external"},
            "spec": {"ports": [{"port": 80}], "externalIPs": ["198.51.100.64"]},
        },  # type: ignore[arg-type]
    )
    lease = cluster.lease("external")
    cluster.start_agent("node1", FAST)
    until(lambda: bool(warnings(cluster, "node1", "enable-external-ips is false")), 30, "log")
    (line,) = warnings(cluster, "node1", "enable-external-ips is false")
    assert f"service={cluster.namespace}/external" in line and "198.51.100.64" in line
    until(lambda: "enable-external-ips is false" in health(cluster, "node1", "l2-announcer"), 10,
          "the health message")  # fmt: skip
    assert cluster.announced("node1") == set()
    assert cluster.holder(lease) == "", "no lease for external IPs that are not announced"

    cluster.start_agent("node2", FAST, extra=["--enable-external-ips=true"])
    until(lambda: cluster.announced("node2") == {"198.51.100.64"}, 30, "announced by node2")
    assert cluster.holder(lease) == "node2"
    assert cluster.announced("node1") == set()
    assert len(warnings(cluster, "node1", "enable-external-ips is false")) == 1


# -- 4. announced only when a pair is programmed --------------------------------------------------


def test_a_held_lease_with_nothing_to_announce_is_not_reported_as_announced(
    cluster: Cluster,
) -> None:
    one_agent_one_service(cluster, ["^wlan[0-9]+"])
    until(lambda: cluster.holder(cluster.lease(1)) == "node1", 30, "lease held")
    until(lambda: "nothing to announce" in health(cluster, "node1", "l2-announcer"), 10, "why")
    passes(cluster)
    assert cluster.announced("node1") == set()
    assert "its interfaces match none of this node's selected devices (lo)" in health(
        cluster, "node1", "l2-announcer"
    )
    assert events(cluster, "service-1") == []
    (line,) = warnings(cluster, "node1", "announcing nothing")
    assert f"service={cluster.namespace}/service-1" in line
    status = l2dbg_status(cluster, "node1")
    assert f"{cluster.lease(1)}   nothing announced" in status

    patch_policy(cluster, "policy1", {"interfaces": ["^lo$"]})
    until(lambda: len(events(cluster, "service-1")) == 1, 30, "one Announcing event")
    assert f"198.51.100.11 on lo from node {cluster.real('node1')}" in (
        events(cluster, "service-1")[0].message
    )


def l2dbg_status(c: Cluster, node: str) -> str:
    l2dbg = Path(sys.executable).parent / "l2dbg"
    out = subprocess.run(
        [str(l2dbg), "status", "--state-dir", str(c.tmp / node)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout


# -- 5. lease churn is health -------------------------------------------------------------------

CHURN = "client-side throttling: 5 QPS below the 9 QPS that 6 leases at 1s renew deadline need"


def test_leases_that_flap_turn_the_elector_degraded_and_add_one_event_each(
    cluster: Cluster,
) -> None:
    """The issue's case: six Services pinned to one node, the seed's fast timers, the client's
    default 5 QPS (below the 1.5 x 6 / 1s the leases need)."""
    ips = cluster.services(6)
    cluster.start_agent("node1", FAST, extra=["--k8s-client-qps=5", "--k8s-client-burst=5"])
    until(lambda: CHURN in health(cluster, "node1", "elector"), 120, "the elector Degraded")
    assert health(cluster, "node1", "elector").startswith("Degraded: ")
    status = l2dbg_status(cluster, "node1")
    (elector,) = [line for line in status.splitlines() if line.strip().startswith("elector")]
    assert "Degraded" in elector and CHURN in elector
    # Each Service announced once, and never again by this same node, however often its lease
    # flaps: after the first event of each, thirty more re-acquisitions add none (the writer
    # shares the throttled client, so without the rule a few more would have gone out by then).
    names = [f"service-{i}" for i in range(1, len(ips) + 1)]
    until(lambda: all(events(cluster, n) for n in names), 60, "an Announcing event each")
    base = acquisitions(cluster, "node1")
    until(lambda: acquisitions(cluster, "node1") >= base + 30, 120, "thirty more acquisitions")
    print(health(cluster, "node1", "elector"))
    assert {n: len(events(cluster, n)) for n in names} == dict.fromkeys(names, 1)


def acquisitions(c: Cluster, node: str) -> int:
    """How often ``node``'s agent started leading a lease (its log has a line for each)."""
    return c.log_text(node).count('msg="Started leading lease')
