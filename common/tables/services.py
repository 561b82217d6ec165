"""Table ``services``: the Services the agent sees, reduced to what announcement decisions read.

Filled by the services reflector. ``external_ips`` is None when ``spec.externalIPs`` is absent
(the reference's noExternal test looks for nil, not empty); ``load_balancer_ips`` holds the
non-empty ``status.loadBalancer.ingress[].ip`` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.tables._codecs import labels_codec, optional_strings_codec, strings_codec
from statedb.table import Table


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...] = ()
    type: str = "ClusterIP"
    load_balancer_class: str = ""
    external_ips: tuple[str, ...] | None = None
    load_balancer_ips: tuple[str, ...] = ()
    external_traffic_policy: str = "Cluster"
    resource_version: str = ""
    uid: str = ""  # metadata.uid: Events name the Service by it
    # The status of the Service's l2announcer.io/Conflict condition as last seen ("True",
    # "False", "" when absent): a new holder corrects a True left by a holder that crashed.
    conflict_condition: str = ""


def _row(s: Service) -> tuple[str, ...]:
    return (
        f"{s.namespace}/{s.name}",
        s.type,
        s.load_balancer_class,
        ", ".join(s.load_balancer_ips),
        ", ".join(s.external_ips or ()),
    )


def _json(s: Service) -> dict[str, Any]:
    return {
        "Namespace": s.namespace,
        "Name": s.name,
        "Labels": dict(s.labels),
        "Type": s.type,
        "LoadBalancerClass": s.load_balancer_class,
        "ExternalIPs": None if s.external_ips is None else list(s.external_ips),
        "LoadBalancerIPs": list(s.load_balancer_ips),
        "ExternalTrafficPolicy": s.external_traffic_policy,
        "ResourceVersion": s.resource_version,
        "UID": s.uid,
        "ConflictCondition": s.conflict_condition,
    }


SERVICES: Table[Service] = Table(
    name="services",
    sql_name="services",
    row_type=Service,
    primary_key=("namespace", "name"),
    codecs={
        "labels": labels_codec("labels"),
        "external_ips": optional_strings_codec("external_ips"),
        "load_balancer_ips": strings_codec("load_balancer_ips"),
    },
    header=("Name", "Type", "LoadBalancerClass", "LoadBalancerIPs", "ExternalIPs"),
    format_row=_row,
    to_json=_json,
    doc="Services, as the announcement decisions see them.",
)
