"""Writes policy conditions to the CiliumL2AnnouncementPolicy status subresource, off the
announcer's thread (a stalled API must not hold up announcements).

The announcer submits what it computed; the writer drops what it already sent (compared on type,
status, message and observedGeneration, not on the timestamp, which the announcer recomputes) and
sends the latest per policy. A failed write is logged and forgotten, so the announcer's next pass
submits it again.

The write is the reference's: a JSON Patch ``add /status`` (``add`` also creates a missing
status, where ``replace`` would fail) with field manager ``cilium-agent-l2-announcer``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("l2announcer.announcer")

FIELD_MANAGER = "cilium-agent-l2-announcer"
Patch = Callable[[str, list[dict[str, Any]]], None]  # (policy name, conditions)


def _essence(conditions: list[dict[str, Any]]) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (c.get("type"), c.get("status"), c.get("message"), c.get("observedGeneration"))
        for c in conditions
    )


class StatusWriter:
    def __init__(self, patch: Patch) -> None:
        self._patch = patch
        self._cond = threading.Condition()
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._sent: dict[str, tuple[tuple[Any, ...], ...]] = {}
        self._stop = False
        self._thread: threading.Thread | None = None
        self.writes = 0

    def submit(self, name: str, generation: int, conditions: list[dict[str, Any]]) -> None:
        with self._cond:
            if self._sent.get(name) == _essence(conditions) and name not in self._pending:
                return
            self._pending[name] = conditions
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="policy-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or bool(self._pending))
                if self._stop:
                    return
                name, conditions = self._pending.popitem()
                self._sent[name] = _essence(conditions)
            try:
                self._patch(name, conditions)
                self.writes += 1
            except Exception as e:
                log.warning("updating policy status failed: %s: %s", name, e)
                with self._cond:
                    self._sent.pop(name, None)


def kubernetes_patch(api_client: Any) -> Patch:
    """A Patch over CustomObjectsApi (JSON Patch must be named: the client defaults to merge)."""
    import kubernetes

    from agent.k8s.objects import POLICY_GROUP, POLICY_PLURAL, POLICY_VERSION

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
            _request_timeout=10,
        )

    return patch
