"""The names of the agent's Leases: one per announced Service, ``cilium-l2announce-<ns>-<name>``,
and one heartbeat per node, ``l2announcer-node-<node>``, renewed by that node while its agent runs.

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


HEARTBEAT_PREFIX = "l2announcer-node"


def heartbeat_name(node: str) -> str:
    """The Lease a node's agent renews while it runs (holder: the node's name)."""
    return f"{HEARTBEAT_PREFIX}-{node}"


def heartbeat_node(name: str) -> str | None:
    """The node whose heartbeat ``name`` is, or None when it is not a heartbeat lease."""
    prefix = HEARTBEAT_PREFIX + "-"
    return name[len(prefix) :] if name.startswith(prefix) and len(name) > len(prefix) else None


def is_agent_lease(name: str) -> bool:
    """A per-Service lease or a node heartbeat: the Leases the agent watches and collects."""
    return is_service_lease(name) or heartbeat_node(name) is not None
