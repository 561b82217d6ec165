"""The Kubernetes calls behind ``ServiceConditions`` (agent/service_conditions.py): read the
Service, and when its condition of that type says something else, patch ``status.conditions``
through the status subresource.

The patch is a strategic merge patch: a Service's conditions merge by ``type``, so writing ours
leaves every other controller's condition alone. ``lastTransitionTime`` changes only when the
status does, as the convention for conditions asks; ``observedGeneration`` is the Service's
generation as read.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import kubernetes

from agent.service_conditions import Condition, WriteCondition

REQUEST_TIMEOUT = 10.0  # seconds
ATTEMPTS = 3  # of a conditional write that another node's write keeps overtaking

log = logging.getLogger("l2announcer.service-conditions")


def kubernetes_condition_writer(api_client: Any) -> WriteCondition:
    core = kubernetes.client.CoreV1Api(api_client)

    def write(namespace: str, name: str, c: Condition) -> None:
        # A conditional write (only_over) carries the resourceVersion it judged: when another
        # node wrote in between, the server refuses it (409) and it is judged again.
        for _ in range(ATTEMPTS):
            try:
                _write_once(namespace, name, c)
                return
            except kubernetes.client.ApiException as e:
                if e.status != 409 or not c.only_over:
                    raise
        log.info("giving up a conditional condition write after %d conflicts", ATTEMPTS)

    def _write_once(namespace: str, name: str, c: Condition) -> None:
        try:
            svc = core.read_namespaced_service(name, namespace, _request_timeout=REQUEST_TIMEOUT)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return  # deleted meanwhile: nothing to say it on
            raise
        status = "True" if c.status else "False"
        current = next(
            (x for x in ((svc.status and svc.status.conditions) or []) if x.type == c.type),
            None,
        )
        if c.only_over and (current is None or current.message != c.only_over):
            return  # no longer this node's claim: someone else has said something since
        if current is not None and (current.status, current.reason, current.message) == (
            status,
            c.reason,
            c.message,
        ):
            return
        since = dt.datetime.now(dt.UTC)
        if current is not None and current.status == status and current.last_transition_time:
            since = current.last_transition_time
        condition = {
            "type": c.type,
            "status": status,
            "reason": c.reason,
            "message": c.message,
            "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "observedGeneration": (svc.metadata and svc.metadata.generation) or 0,
        }
        body: dict[str, Any] = {"status": {"conditions": [condition]}}
        if c.only_over:
            body["metadata"] = {"resourceVersion": svc.metadata and svc.metadata.resource_version}
        core.patch_namespaced_service_status(
            name,
            namespace,
            body,
            _request_timeout=REQUEST_TIMEOUT,
            _content_type="application/strategic-merge-patch+json",  # merge by type
        )

    return write
