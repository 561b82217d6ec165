"""Status error bodies exactly as kube-apiserver writes them, for auth, RBAC and fault injection.

The real server encodes a ``metav1.Status`` with Go's JSON encoder: fields in struct order
(kind, apiVersion, metadata, status, message, reason, details, code), empty fields omitted, and a
trailing newline. Clients parse these bodies (the Python elector creates a Lease only when the
body of a 404 is JSON with ``"code": 404``), so the injected errors must look exactly like the
server's own. This is the one Status writer: handler errors (errors.ApiError) and the answers
produced around the handler (401, 403, injected 4xx/5xx) all go through ``status_dict``.
"""

from __future__ import annotations

import json
from typing import Any

from lab.kubeapi.pipeline import RequestInfo


def qualified_resource(group: str, resource: str) -> str:
    """schema.GroupResource.String(): ``leases.coordination.k8s.io``, ``services`` for core."""
    return f"{resource}.{group}" if group else resource


def status_dict(
    code: int,
    reason: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Failure Status in the field order the apiserver emits."""
    status: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
    }
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    if details is not None:
        status["details"] = details
    status["code"] = code
    return status


def encode(obj: dict[str, Any]) -> bytes:
    """Compact JSON plus the newline Go's json.Encoder appends."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def details_for(info: RequestInfo, **extra: Any) -> dict[str, Any]:
    """StatusDetails for a resource request: name, group (omitted for core), kind = plural."""
    details: dict[str, Any] = {}
    if info.name:
        details["name"] = info.name
    if info.api_group:
        details["group"] = info.api_group
    if info.resource:
        details["kind"] = info.resource
    details.update({k: v for k, v in extra.items() if v})
    return details
