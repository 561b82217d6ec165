"""spec.ipFamilies: which address families a policy announces (both when absent)."""

from __future__ import annotations

from typing import Any

from agent.k8s.objects import policy_row
from agent.policy.evaluate import (
    desired_entries,
    evaluate_policy,
    selecting_policies,
    why_nothing_to_announce,
)
from common.tables.policies import POLICIES, Policy
from common.tables.services import Service

NODE = {"kubernetes.io/hostname": "node1"}
DEVICES = ["eth0"]
DUAL = Service(
    namespace="default",
    name="red",
    load_balancer_ips=("198.51.100.10", "2001:db8::10"),
    external_ips=("2001:db8::20",),
)


def _entries(s: Service, **kw: Any) -> list[str]:
    view = evaluate_policy(Policy("p1", 1, load_balancer_ips=True, **kw), NODE, DEVICES)
    return [ip for ip, _dev in desired_entries(s, selecting_policies(s, [view]))]


def test_absent_announces_both_families_of_a_dual_stack_service_from_one_policy() -> None:
    assert _entries(DUAL) == ["198.51.100.10", "2001:db8::10"]


def test_one_family_announces_only_its_addresses() -> None:
    assert _entries(DUAL, ip_families=("IPv4",)) == ["198.51.100.10"]
    assert _entries(DUAL, ip_families=("IPv6",)) == ["2001:db8::10"]
    assert _entries(DUAL, ip_families=("IPv6",), external_ips=True) == [
        "2001:db8::10",
        "2001:db8::20",
    ]


def test_a_policy_of_one_family_does_not_select_a_service_without_such_an_address() -> None:
    v4_only = Service(namespace="default", name="blue", load_balancer_ips=("198.51.100.11",))
    view = evaluate_policy(
        Policy("p6", 1, load_balancer_ips=True, ip_families=("IPv6",)), NODE, DEVICES
    )
    assert selecting_policies(v4_only, [view]) == []


def test_why_nothing_names_the_family() -> None:
    v6 = Service(namespace="default", name="green", external_ips=("2001:db8::30",))
    view = evaluate_policy(
        Policy("p4", 1, load_balancer_ips=True, external_ips=True, ip_families=("IPv4",)),
        NODE,
        DEVICES,
    )
    assert why_nothing_to_announce(v6, [view], DEVICES) == (
        "policy p4: no valid IP (IPv4 only) in status.loadBalancer.ingress or spec.externalIPs"
    )


def test_the_field_is_read_from_the_object_and_shown_in_the_table() -> None:
    row = policy_row(
        {"metadata": {"name": "p"}, "spec": {"loadBalancerIPs": True, "ipFamilies": ["IPv6"]}}
    )
    assert row is not None and row.ip_families == ("IPv6",)
    assert POLICIES.format_row(row)[2] == "loadBalancerIPs (IPv6 only)"
    assert POLICIES.to_json(row)["IPFamilies"] == ["IPv6"]
    plain = policy_row({"metadata": {"name": "p"}, "spec": {"loadBalancerIPs": True}})
    assert plain is not None and plain.ip_families == ()
    assert POLICIES.format_row(plain)[2] == "loadBalancerIPs"
