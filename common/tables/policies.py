"""Table ``policies``: CiliumL2AnnouncementPolicy objects (cluster-scoped).

Selectors are kept as the JSON the API gave (None when absent: select everything); ``conditions``
is ``status.conditions`` as last seen, so the status writer can tell whether a write is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.tables._codecs import any_codec, strings_codec
from statedb.table import Table


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    generation: int = 0
    service_selector: Any = None
    node_selector: Any = None
    interfaces: tuple[str, ...] = ()
    external_ips: bool = False
    load_balancer_ips: bool = False
    conditions: Any = None  # list of metav1.Condition objects, or None
    resource_version: str = ""
    # spec.ipFamilies ("IPv4", "IPv6"); empty when absent, which announces both.
    ip_families: tuple[str, ...] = ()


def _flags(p: Policy) -> str:
    flags = ", ".join(
        n
        for n, on in (("externalIPs", p.external_ips), ("loadBalancerIPs", p.load_balancer_ips))
        if on
    )
    return f"{flags} ({'/'.join(p.ip_families)} only)" if p.ip_families and flags else flags


def _bad(p: Policy) -> str:
    return ", ".join(c.get("type", "") for c in (p.conditions or []) if c.get("status") == "True")


def _json(p: Policy) -> dict[str, Any]:
    return {
        "Name": p.name,
        "Generation": p.generation,
        "ServiceSelector": p.service_selector,
        "NodeSelector": p.node_selector,
        "Interfaces": list(p.interfaces),
        "ExternalIPs": p.external_ips,
        "LoadBalancerIPs": p.load_balancer_ips,
        "IPFamilies": list(p.ip_families),
        "Conditions": p.conditions,
    }


POLICIES: Table[Policy] = Table(
    name="policies",
    sql_name="policies",
    row_type=Policy,
    primary_key=("name",),
    codecs={
        "service_selector": any_codec("service_selector"),
        "node_selector": any_codec("node_selector"),
        "interfaces": strings_codec("interfaces"),
        "ip_families": strings_codec("ip_families"),
        "conditions": any_codec("conditions"),
    },
    header=("Name", "Interfaces", "Announces", "Conditions"),
    format_row=lambda p: (p.name, ", ".join(p.interfaces), _flags(p), _bad(p)),
    to_json=_json,
    doc="L2 announcement policies and the error conditions they carry.",
)
