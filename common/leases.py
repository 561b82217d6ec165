"""The names of the agent's Leases, one per announced Service: ``cilium-l2announce-<ns>-<name>``.

The names are Cilium's L2 announcer's, so its runbook (``kubectl get lease -n kube-system |
grep cilium-l2announce``) works here unchanged. The agent campaigns under these names, l2dbg
finds a Service's lease by them and the lab lists them; one definition keeps the three from
drifting apart.
"""

from __future__ import annotations

LEASE_PREFIX = "cilium-l2announce"


def lease_name(service_namespace: str, service_name: str) -> str:
    """No escaping and no truncation, as Cilium's: an over-long name fails at the API server."""
    return f"{LEASE_PREFIX}-{service_namespace}-{service_name}"


def is_service_lease(name: str) -> bool:
    """Whether ``name`` is one of the agent's per-Service lease names."""
    return name.startswith(LEASE_PREFIX + "-")
