"""The Kubernetes write behind ``PolicyStatusWriter`` (agent/announcer/policy_status_writer.py):
a policy's conditions to the CiliumL2AnnouncementPolicy status subresource.

The write is Cilium's, so the two agents' status writes look alike to the apiserver: a JSON Patch
``add /status`` (``add`` also creates a missing status, where ``replace`` would fail) with field
manager ``cilium-agent-l2-announcer``.
"""

from __future__ import annotations

from typing import Any

import kubernetes

from agent.announcer.policy_status_writer import Patch
from agent.k8s.objects import POLICY_GROUP, POLICY_PLURAL, POLICY_VERSION

FIELD_MANAGER = "cilium-agent-l2-announcer"
REQUEST_TIMEOUT = 10.0  # seconds


def kubernetes_patch(api_client: Any) -> Patch:
    """A Patch over CustomObjectsApi (JSON Patch must be named: the client defaults to merge)."""
    custom = kubernetes.client.CustomObjectsApi(api_client)

    def patch(name: str, conditions: list[dict[str, Any]]) -> None:
        custom.patch_cluster_custom_object_status(
            POLICY_GROUP,
            POLICY_VERSION,
            POLICY_PLURAL,
            name,
            [{"op": "add", "path": "/status", "value": {"conditions": conditions}}],
            field_manager=FIELD_MANAGER,
            _content_type="application/json-patch+json",
            _request_timeout=REQUEST_TIMEOUT,
        )

    return patch
