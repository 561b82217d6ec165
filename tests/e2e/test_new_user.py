"""What a new user trips over (issue 13), in the lab as the user sees it: a typo in policy1 keeps
ARP answered and is one warning in `l2lab logs`, and enable-external-ips decides whether a
Service's spec.externalIPs are answered.

Each test runs its own lab (test_lab.py's ``name`` fixture, which takes it down and prints
its logs on a failure); the seed's fast timers (3s / 1s / 200ms).
"""

from __future__ import annotations

import json
import re
import signal
from functools import partial
from typing import Any

import pytest

from common.leases import lease_name
from lab import lab
from lab.inventory import FAST_TIMERS, LabState, node_mac
from tests.e2e import test_lab
from tests.e2e.lab_extras import holder_of, l2lab, until
from tests.e2e.test_lab import arping, up

# test_lab's fixtures: a fresh lab name per test (taken down, its logs printed on a failure), and
# the session's clean-up of labs a crashed run left.
lab_name = test_lab.name
_clean_crashed_runs = test_lab._clean_crashed_runs

pytestmark = pytest.mark.timeout(180)

REGEX_ERROR = "error parsing regexp: missing closing ]: `[0-`"
EXTERNAL_IP = "198.51.100.64"  # in the LAN, outside the nodes' and the lab's VIPs' addresses
EXTERNAL_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "external-1", "namespace": "default", "labels": {"color": "blue"}},
    "spec": {"ports": [{"port": 80}], "externalIPs": [EXTERNAL_IP]},
}


def kubectl(name: str, *args: str) -> str:
    return l2lab(name, "kubectl", "--", *args)


def regex_condition(name: str) -> dict[str, Any] | None:
    policy = json.loads(kubectl(name, "get", "l2announcement", "policy1", "-o", "json"))
    for c in (policy.get("status") or {}).get("conditions") or []:
        if c["type"] == "io.cilium/bad-interface-regex":
            return dict(c)
    return None


def warnings(name: str, node: str, text: str) -> list[str]:
    logs = l2lab(name, "logs", node)
    return [line for line in logs.splitlines() if "level=warning" in line and text in line]


def warned(name: str, node: str, text: str) -> bool:
    return bool(warnings(name, node, text))


def mac_of(state: LabState, node: str) -> str:
    return node_mac(state.node_states[node].index)


def test_a_typo_in_policy1_keeps_arp_answered_and_is_one_warning(lab_name: str) -> None:
    name = lab_name
    state = up(name, nodes=3, services=1, timers=FAST_TIMERS)
    vip = state.vips()["service-1"]
    holder = holder_of(state, "service-1")
    assert arping(state, vip, count=2) == [mac_of(state, holder)] * 2

    patch = '{"spec":{"interfaces":["eth[0-"]}}'
    kubectl(name, "patch", "l2announcement", "policy1", "--type", "merge", "-p", patch)
    until(lambda: (regex_condition(name) or {}).get("status") == "True", "condition set", 30)
    assert (regex_condition(name) or {})["message"] == REGEX_ERROR
    # Every node checks policy1 (its nodeSelector selects them all): one warning each.
    for node in state.node_states:
        until(partial(warned, name, node, "regexp"), f"{node} warns", 30)
    assert arping(state, vip, count=5) == [mac_of(state, holder)] * 5, "the typo cost traffic"
    assert holder_of(state, "service-1") == holder
    for node in state.node_states:
        (line,) = warnings(name, node, "regexp")
        assert 'msg="Error processing policy event"' in line
        assert f'error="{REGEX_ERROR}"' in line

    kubectl(name, "patch", "l2announcement", "policy1", "--type", "merge", "-p",
            '{"spec":{"interfaces":["^eth[0-9]+"]}}')  # fmt: skip
    until(lambda: (regex_condition(name) or {}).get("status") == "False", "condition cleared", 30)
    assert (regex_condition(name) or {})["message"] == ""
    assert arping(state, vip, count=2) == [mac_of(state, holder)] * 2
    for node in state.node_states:
        assert len(warnings(name, node, "regexp")) == 1, "logged once, not once per pass"


def test_enable_external_ips_decides_whether_external_ips_are_answered(
    lab_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = lab_name
    state = up(name, nodes=2, services=1, timers=FAST_TIMERS)
    path = state.dir / "external-1.json"
    path.write_text(json.dumps(EXTERNAL_SERVICE))
    kubectl(name, "apply", "-f", str(path))
    lease = lease_name("default", "external-1")

    # enable-external-ips is false (the default): no lease, no answer, one warning per node.
    for node in state.node_states:
        until(partial(warned, name, node, "enable-external-ips is false"), f"{node} warns", 30)
        config = lab.run_in(state, node, ["l2dbg", "config", "--all"])
        assert re.search(r"^EnableExternalIPs\s+: false$", config, re.M)
    assert arping(state, EXTERNAL_IP, count=2) == []
    assert lab.leases(state).get(lease, "") == ""

    # true: the agents restarted with it answer for the external IP (one node, the holder). The
    # lab has no command for an agent's configuration keys: its agents are started from here.
    plain = lab.agent_args
    monkeypatch.setattr(lab, "agent_args", lambda s, n: [*plain(s, n), "--enable-external-ips"])
    for node in state.node_states:
        assert lab.signal_agent(state, node, signal.SIGTERM)
        lab.start_agent(state, node, say=lambda _: None)
    until(lambda: lab.leases(state).get(lease, "") != "", "external-1 has a holder", 60)
    holder = lab.leases(state)[lease]
    until(lambda: arping(state, EXTERNAL_IP, count=1) != [], "external IP answered", 30)
    assert arping(state, EXTERNAL_IP, count=3) == [mac_of(state, holder)] * 3
    config = lab.run_in(state, holder, ["l2dbg", "config", "--all"])
    assert re.search(r"^EnableExternalIPs\s+: true$", config, re.M)
