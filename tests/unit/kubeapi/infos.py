"""RequestInfos the kubeapi unit tests share: the agent's Lease calls, parsed as server.py would."""

from __future__ import annotations

from lab.kubeapi.pipeline import RequestInfo

# The HTTP method of the verbs the tests look at (anything else: GET).
_METHODS = {"create": "POST", "update": "PUT"}


def lease_info(verb: str, name: str = "x", ns: str = "kube-system") -> RequestInfo:
    """A request on Lease `ns`/`name` (``name`` "" for list and create)."""
    return RequestInfo(
        method=_METHODS.get(verb, "GET"),
        path=f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
        verb=verb,
        api_group="coordination.k8s.io",
        api_version="v1",
        resource="leases",
        namespace=ns,
        name=name,
    )
