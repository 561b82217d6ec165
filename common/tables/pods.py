"""Table ``pods``: pods on this node and their IPv4 addresses (for L2 pod announcements)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.tables._codecs import strings_codec
from statedb.table import Table


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    node_name: str = ""
    ips: tuple[str, ...] = ()
    host_network: bool = False
    # metadata.uid: a pod deleted and re-created under the same name is a new pod, even when a
    # reader sees only the newest row (a change feed coalesces the delete and the create).
    uid: str = ""


def _json(p: Pod) -> dict[str, Any]:
    return {
        "Namespace": p.namespace,
        "Name": p.name,
        "NodeName": p.node_name,
        "IPs": list(p.ips),
        "HostNetwork": p.host_network,
        "UID": p.uid,
    }


PODS: Table[Pod] = Table(
    name="pods",
    sql_name="pods",
    row_type=Pod,
    primary_key=("namespace", "name"),
    codecs={"ips": strings_codec("ips")},
    header=("Name", "Node", "IPs"),
    format_row=lambda p: (f"{p.namespace}/{p.name}", p.node_name, ", ".join(p.ips)),
    to_json=_json,
    doc="Pods on this node and their addresses.",
)
