"""Telling an uninstall from a restart, and driving one: the agent's own DaemonSet.

On SIGTERM an agent cannot tell from its own pod why it is stopping (a rolling update, a drain and
an uninstall all delete the pod). Its DaemonSet can: it is gone, or carries a deletionTimestamp,
only when the installation is being removed. Anything else, including not being able to ask, is
treated as a restart, which keeps the node's datapath for the next agent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from enum import Enum
from typing import Any

DAEMONSET_ENV = "DAEMONSET_NAME"
"""The environment variable naming the agent's own DaemonSet (in its namespace, k8s-namespace);
unset: the agent never treats a stop as an uninstall."""


class DaemonSetState(Enum):
    PRESENT = "present"
    DELETED = "deleted"  # gone, or being deleted (deletionTimestamp)
    UNKNOWN = "unknown"  # the API could not be asked


def daemonset_state(
    api_client: Any, namespace: str, name: str, timeout: float
) -> tuple[DaemonSetState, str]:
    """The DaemonSet's state and a few words on how it was told."""
    import kubernetes

    api: Any = kubernetes.client.AppsV1Api(api_client)  # raw responses: typed loosely
    try:
        resp = api.read_namespaced_daemon_set(
            name, namespace, _preload_content=False, _request_timeout=timeout
        )
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return DaemonSetState.DELETED, f"daemonset {namespace}/{name} is gone"
        return DaemonSetState.UNKNOWN, f"get daemonset {namespace}/{name}: {e.status} {e.reason}"
    except Exception as e:  # timeouts, refused connections
        return DaemonSetState.UNKNOWN, f"get daemonset {namespace}/{name}: {type(e).__name__}: {e}"
    meta = json.loads(resp.data).get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return DaemonSetState.DELETED, f"daemonset {namespace}/{name} is being deleted"
    return DaemonSetState.PRESENT, f"daemonset {namespace}/{name} is present"


def delete_daemonset_and_wait(
    api_client: Any,
    namespace: str,
    name: str,
    wait: float,
    say: Callable[[str], None],
    poll: float = 1.0,
) -> bool:
    """Delete the DaemonSet with foreground propagation and wait until it is gone, which is once
    its pods have terminated (each agent cleans its node on the way out). False on timeout."""
    import kubernetes

    api = kubernetes.client.AppsV1Api(api_client)
    body = kubernetes.client.V1DeleteOptions(propagation_policy="Foreground")
    try:
        api.delete_namespaced_daemon_set(name, namespace, body=body, _request_timeout=10)
        say(f"deleting daemonset {namespace}/{name}; waiting for its pods to stop")
    except kubernetes.client.ApiException as e:
        if e.status != 404:
            raise
    deadline = time.monotonic() + wait
    while True:
        try:
            api.read_namespaced_daemon_set(name, namespace, _request_timeout=10)
        except kubernetes.client.ApiException as e:
            if e.status != 404:
                raise
            say(f"daemonset {namespace}/{name} is gone")
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
