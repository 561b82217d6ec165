"""The reference's rules for Service eligibility, policy handling and the announced entries,
table-driven, including the quirks we fix."""

from __future__ import annotations

from typing import Any

import pytest

from agent.policy.evaluate import (
    COND_BAD_INTERFACE_REGEX,
    COND_BAD_NODE_SELECTOR,
    COND_BAD_SERVICE_SELECTOR,
    desired_entries,
    eligible,
    evaluate_policy,
    selecting_policies,
    service_labels,
)
from common.tables.l2_announce import Origin
from common.tables.policies import Policy
from common.tables.services import Service

NODE = {"kubernetes.io/hostname": "node1", "zone": "a"}
DEVICES = ["eth0", "eth1"]


def svc(**kw: Any) -> Service:
    base: dict[str, Any] = {"namespace": "default", "name": "red", "labels": (("app", "red"),)}
    base.update(kw)
    return Service(**base)


def pol(**kw: Any) -> Policy:
    base: dict[str, Any] = {"name": "p1", "generation": 1, "load_balancer_ips": True}
    base.update(kw)
    return Policy(**base)


@pytest.mark.parametrize(
    ("service", "ok"),
    [
        (svc(), False),  # ClusterIP only: no lease at all
        (svc(external_ips=()), True),  # present but empty counts (gives no entries later)
        (svc(load_balancer_ips=("198.51.100.10",)), True),
        (
            svc(load_balancer_ips=("198.51.100.10",), load_balancer_class="io.cilium/l2-announcer"),
            True,
        ),
        (svc(load_balancer_ips=("198.51.100.10",), load_balancer_class="metallb"), False),
        (svc(external_ips=("203.0.113.5",), type="ClusterIP"), True),  # type is not checked
    ],
)
def test_eligibility(service: Service, ok: bool) -> None:
    assert eligible(service) is ok


def test_synthetic_labels_overwrite_real_ones() -> None:
    s = svc(labels=(("io.kubernetes.service.namespace", "fake"), ("app", "red")))
    assert service_labels(s) == {
        "app": "red",
        "io.kubernetes.service.namespace": "default",
        "io.kubernetes.service.name": "red",
    }


LB = ("198.51.100.10",)
EXT = ("203.0.113.5",)

SELECTION = [
    ("selects by label", pol(service_selector={"matchLabels": {"app": "red"}}), svc(load_balancer_ips=LB), True),
    ("label mismatch", pol(service_selector={"matchLabels": {"app": "blue"}}), svc(load_balancer_ips=LB), False),
    ("nil selector selects all", pol(), svc(load_balancer_ips=LB), True),
    (
        "namespace via synthetic label",
        pol(service_selector={"matchLabels": {"io.kubernetes.service.namespace": "default"}}),
        svc(load_balancer_ips=LB),
        True,
    ),
    ("neither IP flag selects nothing", pol(load_balancer_ips=False), svc(load_balancer_ips=LB, external_ips=EXT), False),
    ("externalIPs flag, only LB IPs", pol(load_balancer_ips=False, external_ips=True), svc(load_balancer_ips=LB), False),
    ("externalIPs flag and externalIPs", pol(load_balancer_ips=False, external_ips=True), svc(external_ips=EXT), True),
    ("loadBalancerIPs flag, hostname-only ingress", pol(), svc(external_ips=EXT), False),
    ("foreign class, even when the policy is re-applied", pol(), svc(load_balancer_ips=LB, load_balancer_class="other"), False),
    ("node selector excludes this node", pol(node_selector={"matchLabels": {"zone": "b"}}), svc(load_balancer_ips=LB), False),
    ("node selector includes this node", pol(node_selector={"matchLabels": {"zone": "a"}}), svc(load_balancer_ips=LB), True),
    ("interfaces match no device", pol(interfaces=("^wlan",)), svc(load_balancer_ips=LB), True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "service", "selected"), [c[1:] for c in SELECTION], ids=[c[0] for c in SELECTION]
)
def test_selection(policy: Policy, service: Service, selected: bool) -> None:
    view = evaluate_policy(policy, NODE, DEVICES)
    assert bool(selecting_policies(service, [view])) is selected


def test_policies_selecting_a_service_come_in_name_order() -> None:
    views = [evaluate_policy(pol(name=n), NODE, DEVICES) for n in ("zeta", "alpha", "mid")]
    assert [v.name for v in selecting_policies(svc(load_balancer_ips=LB), views)] == [
        "alpha",
        "mid",
        "zeta",
    ]


CHECKS = [
    ("all fine", pol(), {COND_BAD_NODE_SELECTOR: None, COND_BAD_INTERFACE_REGEX: None, COND_BAD_SERVICE_SELECTOR: None}),
    ("other node: only the node check ran", pol(node_selector={"matchLabels": {"zone": "b"}}), {COND_BAD_NODE_SELECTOR: None}),
    (
        "bad node selector stops there",
        pol(node_selector={"matchExpressions": [{"key": "zone", "operator": "In"}]}),
        {COND_BAD_NODE_SELECTOR: "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"},
    ),
    (
        "bad regex stops before the service selector",
        pol(interfaces=("[eth",), service_selector={"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
        {COND_BAD_NODE_SELECTOR: None, COND_BAD_INTERFACE_REGEX: "error parsing regexp: missing closing ]: `[eth`"},
    ),
    (
        "the seed's bad service selector",
        pol(service_selector={"matchExpressions": [{"key": "something", "operator": "NotIn"}]}),
        {
            COND_BAD_NODE_SELECTOR: None,
            COND_BAD_INTERFACE_REGEX: None,
            COND_BAD_SERVICE_SELECTOR: "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
        },
    ),
]  # fmt: skip


@pytest.mark.parametrize(("policy", "checks"), [c[1:] for c in CHECKS], ids=[c[0] for c in CHECKS])
def test_condition_checks_in_the_references_order(
    policy: Policy, checks: dict[str, str | None]
) -> None:
    view = evaluate_policy(policy, NODE, DEVICES)
    assert dict(view.checks) == checks
    assert view.applies is (
        policy.name == "p1" and all(v is None for v in checks.values()) and len(checks) == 3
    )


def test_desired_entries_lb_then_external_on_each_device_invalid_skipped_ipv6_kept() -> None:
    s = svc(
        load_balancer_ips=("198.51.100.10", "2001:db8::1"), external_ips=("203.0.113.5", "bogus")
    )
    views = selecting_policies(s, [evaluate_policy(pol(external_ips=True), NODE, DEVICES)])
    got = desired_entries(s, views)
    assert list(got) == [
        ("198.51.100.10", "eth0"),
        ("198.51.100.10", "eth1"),
        ("2001:db8::1", "eth0"),
        ("2001:db8::1", "eth1"),
        ("203.0.113.5", "eth0"),
        ("203.0.113.5", "eth1"),
    ]
    assert set(got.values()) == {Origin("default", "red")}


def test_entries_are_the_union_over_policies_each_with_its_devices() -> None:
    s = svc(load_balancer_ips=LB, external_ips=EXT)
    views = [
        evaluate_policy(pol(name="a", interfaces=("eth0",)), NODE, DEVICES),
        evaluate_policy(
            pol(name="b", load_balancer_ips=False, external_ips=True, interfaces=("eth1",)),
            NODE,
            DEVICES,
        ),
    ]
    assert sorted(desired_entries(s, selecting_policies(s, views))) == [
        ("198.51.100.10", "eth0"),
        ("203.0.113.5", "eth1"),
    ]
