"""A bad edit of a working policy keeps its last valid version in force (LastValidPolicies), and
what an agent that never saw a valid version does: nothing through that policy."""

from __future__ import annotations

from typing import Any

import pytest

from agent.policy.evaluate import (
    COND_BAD_INTERFACE_REGEX,
    COND_BAD_NODE_SELECTOR,
    COND_BAD_SERVICE_SELECTOR,
    PolicyView,
    selecting_policies,
    why_nothing_to_announce,
)
from agent.policy.last_valid import LastValidPolicies
from common.tables.policies import Policy
from common.tables.services import Service

NODE = {"kubernetes.io/hostname": "node1"}
DEVICES = ["eth0", "eth1"]
RED = Service("default", "red", (("color", "blue"),), "LoadBalancer", "", None, ("198.51.100.10",))
GOOD: dict[str, Any] = {
    "service_selector": {"matchLabels": {"color": "blue"}},
    "interfaces": ("^eth[0-9]+",),
    "load_balancer_ips": True,
}
NOT_IN_WITHOUT_VALUES = {"matchExpressions": [{"key": "x", "operator": "NotIn"}]}
# Each invalid form of the issue: the field to change, its bad value, the condition it sets.
INVALID = [
    ("service_selector", NOT_IN_WITHOUT_VALUES, COND_BAD_SERVICE_SELECTOR),
    ("node_selector", NOT_IN_WITHOUT_VALUES, COND_BAD_NODE_SELECTOR),
    ("interfaces", ("eth[0-",), COND_BAD_INTERFACE_REGEX),
]


def pol(generation: int, **kw: Any) -> Policy:
    return Policy(**{"name": "policy1", "generation": generation, **GOOD, **kw})


def only(views: list[PolicyView]) -> PolicyView:
    assert len(views) == 1
    return views[0]


@pytest.mark.parametrize(("field", "bad", "condition"), INVALID)
def test_a_bad_edit_keeps_the_last_valid_version_and_a_fix_replaces_it(
    field: str, bad: Any, condition: str
) -> None:
    memory = LastValidPolicies()
    good = only(memory.evaluate([pol(1)], NODE, DEVICES))
    assert good.applies and good.devices == ("eth0", "eth1") and good.kept_generation is None

    broken = only(memory.evaluate([pol(2, **{field: bad})], NODE, DEVICES))
    assert broken.checks[condition] is not None, "the current version's error is reported"
    assert not broken.valid
    assert broken.kept_generation == 1
    assert broken.applies and broken.devices == ("eth0", "eth1")
    assert selecting_policies(RED, [broken]) == [broken], "the Service stays selected"

    fixed = only(memory.evaluate([pol(3, interfaces=("^eth1$",))], NODE, DEVICES))
    assert fixed.kept_generation is None and fixed.valid
    assert fixed.devices == ("eth1",), "the corrected version applies as soon as it comes"


@pytest.mark.parametrize(("field", "bad", "condition"), INVALID)
def test_an_agent_that_starts_with_only_an_invalid_policy_does_not_apply_it(
    field: str, bad: Any, condition: str
) -> None:
    memory = LastValidPolicies()
    view = only(memory.evaluate([pol(2, **{field: bad})], NODE, DEVICES))
    assert view.checks[condition] is not None
    assert view.kept_generation is None and not view.applies
    assert selecting_policies(RED, [view]) == []


def test_the_kept_version_follows_the_nodes_devices() -> None:
    memory = LastValidPolicies()
    memory.evaluate([pol(1)], NODE, DEVICES)
    view = only(memory.evaluate([pol(2, interfaces=("eth[0-",))], NODE, ["eth1"]))
    assert view.kept_generation == 1 and view.devices == ("eth1",)


def test_a_valid_version_that_does_not_select_this_node_is_not_bridged() -> None:
    memory = LastValidPolicies()
    memory.evaluate([pol(1)], NODE, DEVICES)
    elsewhere = {"matchLabels": {"kubernetes.io/hostname": "node2"}}
    view = only(memory.evaluate([pol(2, node_selector=elsewhere)], NODE, DEVICES))
    assert view.valid and not view.applies and view.kept_generation is None
    # On a node the policy does not select, a bad regex is not even checked (reference order).
    view = only(
        memory.evaluate([pol(3, node_selector=elsewhere, interfaces=("[",))], NODE, DEVICES)
    )
    assert not view.applies


def test_a_deleted_policy_is_forgotten() -> None:
    memory = LastValidPolicies()
    memory.evaluate([pol(1)], NODE, DEVICES)
    memory.evaluate([], NODE, DEVICES)
    assert memory.last_valid("policy1") is None
    view = only(memory.evaluate([pol(2, interfaces=("eth[0-",))], NODE, DEVICES))
    assert view.kept_generation is None and not view.applies


def test_why_a_held_lease_has_nothing_to_announce() -> None:
    memory = LastValidPolicies()
    wlan = only(memory.evaluate([pol(1, interfaces=("^wlan[0-9]+",))], NODE, DEVICES))
    assert why_nothing_to_announce(RED, [wlan], DEVICES) == (
        "policy policy1: its interfaces match none of this node's selected devices (eth0, eth1)"
    )
    assert why_nothing_to_announce(RED, [wlan], []) == (
        "policy policy1: this node has no selected device"
    )
    eth = only(memory.evaluate([pol(2)], NODE, DEVICES))
    no_ip = Service("default", "red", (("color", "blue"),), "LoadBalancer", "", None, ("x",))
    assert why_nothing_to_announce(no_ip, [eth], DEVICES) == (
        "policy policy1: no valid IP in status.loadBalancer.ingress"
    )
