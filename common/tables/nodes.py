"""Table ``nodes``: Node objects (the agent reflects its own node) and their labels, which
policies' nodeSelectors match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.tables._codecs import labels_codec
from statedb.table import Table


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: tuple[tuple[str, str], ...] = ()


def _json(n: Node) -> dict[str, Any]:
    return {"Name": n.name, "Labels": dict(n.labels)}


NODES: Table[Node] = Table(
    name="nodes",
    sql_name="nodes",
    row_type=Node,
    primary_key=("name",),
    codecs={"labels": labels_codec("labels")},
    header=("Name", "Labels"),
    format_row=lambda n: (n.name, ", ".join(f"{k}={v}" for k, v in n.labels)),
    to_json=_json,
    doc="Nodes (this one) and their labels.",
)
