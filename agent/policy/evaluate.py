"""Which Services this node campaigns for, and what the holder of a Service's lease announces.

Pure functions over table rows, by the reference's rules, level-triggered: the announcer
recomputes from the current rows rather than patching state event by event, so an event applied
in a different order gives the same answer. Where the reference has a quirk, this says so:
- the load-balancer class filter applies on every path (the reference skipped it when a policy
  was re-applied, so a Service of another class could be announced until its next update);
- policies that select a Service are taken in name order (the reference used map order).

Beyond the reference, a policy may name the address families it announces (``spec.ipFamilies``,
IPv4 and/or IPv6; both when absent): a dual-stack Service's addresses of both families are
announced from its one lease, and a policy limited to one family selects a Service only for
addresses of that family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.policy.interfaces import InterfaceRegexError, compile_interfaces, select_devices
from common.apimachinery import Selector, SelectorError, compile_selector
from common.tables.l2_announce import Origin
from common.tables.policies import Policy
from common.tables.services import Service

L2_LOAD_BALANCER_CLASS = "io.cilium/l2-announcer"
LABEL_SERVICE_NAMESPACE = "io.kubernetes.service.namespace"
LABEL_SERVICE_NAME = "io.kubernetes.service.name"

COND_BAD_NODE_SELECTOR = "io.cilium/bad-node-selector"
COND_BAD_INTERFACE_REGEX = "io.cilium/bad-interface-regex"
COND_BAD_SERVICE_SELECTOR = "io.cilium/bad-service-selector"


@dataclass(frozen=True)
class PolicyView:
    """A policy as it stands for this node."""

    name: str
    applies: bool  # valid and its nodeSelector selects this node
    service_selector: Selector | None = None
    devices: tuple[str, ...] = ()
    external_ips: bool = False
    load_balancer_ips: bool = False
    families: frozenset[int] = frozenset({4, 6})  # IP versions announced
    # Condition type -> error message, or None when checked and fine. A type that was not
    # checked (an earlier check stopped the evaluation) is absent and left as it is.
    checks: Mapping[str, str | None] = field(default_factory=dict)
    # The current version is invalid and the selection above is that of this earlier, valid
    # generation (agent/policy/last_valid.py); None when the current version is in use.
    kept_generation: int | None = None

    @property
    def valid(self) -> bool:
        """No check of this version failed."""
        return all(error is None for error in self.checks.values())


def evaluate_policy(
    p: Policy, node_labels: Mapping[str, str], selected_devices: Sequence[str]
) -> PolicyView:
    """The reference's order, which decides the error reported when several checks would fail:
    node selector, then interfaces, then service selector."""
    checks: dict[str, str | None] = {}
    try:
        node_selector = compile_selector(p.node_selector)
    except SelectorError as e:
        checks[COND_BAD_NODE_SELECTOR] = str(e)
        return PolicyView(p.name, False, checks=checks)
    checks[COND_BAD_NODE_SELECTOR] = None
    if not node_selector.matches(node_labels):
        return PolicyView(p.name, False, checks=checks)
    try:
        patterns = compile_interfaces(p.interfaces)
    except InterfaceRegexError as e:
        checks[COND_BAD_INTERFACE_REGEX] = str(e)
        return PolicyView(p.name, False, checks=checks)
    checks[COND_BAD_INTERFACE_REGEX] = None
    try:
        service_selector = compile_selector(p.service_selector)
    except SelectorError as e:
        checks[COND_BAD_SERVICE_SELECTOR] = str(e)
        return PolicyView(p.name, False, checks=checks)
    checks[COND_BAD_SERVICE_SELECTOR] = None
    return PolicyView(
        p.name,
        True,
        service_selector,
        tuple(select_devices(patterns, selected_devices)),
        p.external_ips,
        p.load_balancer_ips,
        _families(p.ip_families),
        checks,
    )


_FAMILY_VERSIONS = {"IPv4": 4, "IPv6": 6}


def _families(names: Sequence[str]) -> frozenset[int]:
    """The IP versions of ``spec.ipFamilies``; both when absent (or naming none we know: the
    CRD's schema admits only IPv4 and IPv6)."""
    versions = frozenset(_FAMILY_VERSIONS[n] for n in names if n in _FAMILY_VERSIONS)
    return versions or frozenset({4, 6})


def service_labels(s: Service) -> dict[str, str]:
    """The labels policies match: the Service's own, plus two synthetic ones that win."""
    labels = dict(s.labels)
    labels[LABEL_SERVICE_NAMESPACE] = s.namespace
    labels[LABEL_SERVICE_NAME] = s.name
    return labels


def eligible(s: Service) -> bool:
    """Has something to announce, and no other load balancer class claims it."""
    has_ips = s.external_ips is not None or bool(s.load_balancer_ips)
    return has_ips and s.load_balancer_class in ("", L2_LOAD_BALANCER_CLASS)


def selecting_policies(s: Service, views: Iterable[PolicyView]) -> list[PolicyView]:
    """The policies (in name order) that select ``s`` on this node; empty if none or ineligible."""
    if not eligible(s):
        return []
    labels = service_labels(s)
    out = []
    for v in sorted(views, key=lambda v: v.name):
        if not v.applies or v.service_selector is None:
            continue
        ip_type = (v.external_ips and s.external_ips is not None) or (
            v.load_balancer_ips and bool(s.load_balancer_ips)
        )
        if ip_type and len(v.families) == 1:
            ip_type = bool(_policy_ips(s, v))  # only addresses of its family count
        if ip_type and v.service_selector.matches(labels):
            out.append(v)
    return out


def _valid_ips(ips: Iterable[str], families: frozenset[int]) -> list[str]:
    out = []
    for ip in ips:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue  # the reference skips unparsable strings silently
        if addr.version in families:
            out.append(str(addr))
    return out


def _policy_ips(s: Service, v: PolicyView) -> list[str]:
    """The IPs of ``s`` that policy ``v`` announces: load balancer IPs first, then external IPs
    (one place, so that what is announced and why nothing is never disagree)."""
    ips: list[str] = []
    if v.load_balancer_ips:
        ips += _valid_ips(s.load_balancer_ips, v.families)
    if v.external_ips:
        ips += _valid_ips(s.external_ips or (), v.families)
    return ips


def desired_entries(s: Service, policies: Sequence[PolicyView]) -> dict[tuple[str, str], Origin]:
    """(IP, interface) pairs the holder of ``s``'s lease announces, for each selecting policy:
    load balancer IPs first, then external IPs, each on every device of that policy."""
    origin = Origin(s.namespace, s.name)
    out: dict[tuple[str, str], Origin] = {}
    for v in policies:
        for ip in _policy_ips(s, v):
            for dev in v.devices:
                out[(ip, dev)] = origin
    return out


def why_nothing_to_announce(
    s: Service, policies: Sequence[PolicyView], selected_devices: Sequence[str]
) -> str:
    """Why the holder of ``s``'s lease has no (IP, interface) pair to announce (when
    ``desired_entries`` is empty): for each selecting policy, no device or no IP."""
    reasons = []
    for v in policies:
        missing = []
        if not v.devices:
            missing.append(
                f"its interfaces match none of this node's selected devices "
                f"({', '.join(selected_devices)})"
                if selected_devices
                else "this node has no selected device"
            )
        if not _policy_ips(s, v):
            kinds = [
                k
                for k, on in (
                    ("status.loadBalancer.ingress", v.load_balancer_ips),
                    ("spec.externalIPs", v.external_ips),
                )
                if on
            ]
            only = "" if len(v.families) == 2 else f" (IPv{min(v.families)} only)"
            missing.append(f"no valid IP{only} in {' or '.join(kinds)}")
        if missing:
            reasons.append(f"policy {v.name}: {'; '.join(missing)}")
    return ", ".join(reasons) if reasons else "no policy selects it"
