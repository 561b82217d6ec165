"""Table ``endpointslices``: each EndpointSlice of a Service, reduced to where it can serve.

Filled by the endpointslices reflector (discovery.k8s.io/v1, every namespace). A row keeps what
the gates ask of a Service's endpoints and nothing else (no addresses, no ports): which nodes
have an endpoint that can take traffic, how many can, and how many of those carry no
``nodeName``. An endpoint *can take traffic* ("usable") when it is ready, or serving while
terminating: kube-proxy sends to a terminating endpoint that still serves when a Service (or, for
``externalTrafficPolicy: Local``, a node) has no ready one left, so the node holding such an
endpoint still delivers.

A Service's rows are found through the ``service`` index (namespace, ``kubernetes.io/service-name``
label); a Service usually has one slice per address family, a large one a few more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from common.tables._codecs import strings_codec
from statedb.table import Table


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    namespace: str
    name: str
    service: str
    """The ``kubernetes.io/service-name`` label: the Service the slice belongs to."""
    address_type: str = "IPv4"
    nodes: tuple[str, ...] = ()
    """Sorted names of the nodes with at least one usable endpoint in this slice."""
    endpoints: int = 0
    """Every endpoint of the slice, usable or not."""
    ready: int = 0
    """Ready endpoints (``conditions.ready`` true or absent)."""
    terminating: int = 0
    """Endpoints serving while terminating, and not ready."""
    without_node: int = 0
    """Usable endpoints (ready or serving-terminating) that carry no ``nodeName``."""

    @property
    def usable(self) -> int:
        return self.ready + self.terminating


@dataclass(frozen=True, slots=True)
class Backends:
    """What the slices of one Service say, summed: what the gates decide on."""

    nodes: frozenset[str] = frozenset()
    usable: int = 0
    without_node: int = 0

    @staticmethod
    def of(slices: Iterable[EndpointSlice]) -> Backends:
        nodes: set[str] = set()
        usable = without_node = 0
        for s in slices:
            nodes.update(s.nodes)
            usable += s.usable
            without_node += s.without_node
        return Backends(frozenset(nodes), usable, without_node)


def _row(s: EndpointSlice) -> tuple[str, ...]:
    return (
        f"{s.namespace}/{s.service}",
        s.name,
        s.address_type,
        ", ".join(s.nodes) or "-",
        f"{s.ready}/{s.endpoints}",
        str(s.terminating),
        str(s.without_node),
    )


def _json(s: EndpointSlice) -> dict[str, Any]:
    return {
        "Namespace": s.namespace,
        "Name": s.name,
        "Service": s.service,
        "AddressType": s.address_type,
        "Nodes": list(s.nodes),
        "Endpoints": s.endpoints,
        "Ready": s.ready,
        "Terminating": s.terminating,
        "WithoutNode": s.without_node,
    }


ENDPOINT_SLICES: Table[EndpointSlice] = Table(
    name="endpointslices",
    sql_name="endpointslices",
    row_type=EndpointSlice,
    primary_key=("namespace", "name"),
    indexes={"service": ("namespace", "service")},
    codecs={"nodes": strings_codec("nodes")},
    header=("Service", "Slice", "AddressType", "Nodes", "Ready", "Terminating", "WithoutNode"),
    format_row=_row,
    to_json=_json,
    doc="EndpointSlices of Services: the nodes whose endpoints can take traffic.",
)

ENDPOINT_SLICES_BY_SERVICE = ENDPOINT_SLICES.index("service")

__all__ = ["ENDPOINT_SLICES", "ENDPOINT_SLICES_BY_SERVICE", "Backends", "EndpointSlice"]
