"""Leases over the official client: the elector's LeaseAPI, the lease mapping for the leases
reflector, and lease GC.

Bodies are plain JSON (``_preload_content=False``) so MicroTime strings go to the server exactly
as the elector wrote them (six fractional digits) and come back unparsed.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from agent.k8s.reflector import Mapping, Obj
from agent.leases.api import Conflict, Forbidden, LeaseAPIError, NotFound
from agent.leases.record import LeaseRecord, row_from_record
from common.leases import LEASE_PREFIX, is_service_lease
from common.tables.leases import LEASES, Lease

log = logging.getLogger("l2announcer.leases")


def record_from_object(obj: Obj) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime") or "",
        renew_time=spec.get("renewTime") or "",
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion", "")),
    )


def lease_row(obj: Obj) -> Lease | None:
    name = (obj.get("metadata") or {}).get("name", "")
    if not is_service_lease(name):
        return None
    return row_from_record(name, record_from_object(obj))


LEASE_MAPPING = Mapping(LEASES, lease_row, lambda o: (o["metadata"]["name"],))


def _body(namespace: str, name: str, r: LeaseRecord) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if r.resource_version:
        metadata["resourceVersion"] = r.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": r.holder,
        "leaseDurationSeconds": r.duration_seconds,
        "leaseTransitions": r.transitions,
    }
    if r.acquire_time:
        spec["acquireTime"] = r.acquire_time
    if r.renew_time:
        spec["renewTime"] = r.renew_time
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


def _error(e: Any) -> LeaseAPIError:
    status = int(getattr(e, "status", 0) or 0)
    try:
        message = json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError, AttributeError):
        message = f"{status} {getattr(e, 'reason', '')}".strip()
    if status == 409:
        return Conflict(message)
    if status == 404:
        return NotFound(message)
    if status == 403:
        return Forbidden(message)
    return LeaseAPIError(message)


class KubernetesLeaseAPI:
    """The elector's LeaseAPI over ``CoordinationV1Api``."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        import kubernetes

        from agent.k8s.client import request_sent_at

        self._api = kubernetes.client.CoordinationV1Api(api_client)
        self._exc = kubernetes.client.ApiException
        self._request_sent_at = request_sent_at  # bound once: sent_at runs after every request
        self.namespace = namespace

    def _call(self, fn: Any, *args: Any, timeout: float, **kwargs: Any) -> Obj:
        # Past the client's pydantic argument validation: it turns our MicroTime strings into
        # datetimes and back with isoformat(), which drops a .000000 fraction, and the API server
        # refuses a MicroTime without one (400, "cannot parse ... as .000000").
        raw = getattr(fn, "raw_function", None)
        if raw is not None:
            fn = functools.partial(raw, fn.__self__)
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        except self._exc as e:
            raise _error(e) from None
        except Exception as e:  # urllib3 timeouts, resets: the elector retries
            raise LeaseAPIError(f"{type(e).__name__}: {e}") from None
        return dict(json.loads(resp.data))

    def sent_at(self) -> float | None:
        """When this thread's latest request left the client-side rate limiter (monotonic)."""
        return self._request_sent_at()

    def get(self, name: str, timeout: float) -> LeaseRecord | None:
        try:
            obj = self._call(self._api.read_namespaced_lease, name, self.namespace, timeout=timeout)
        except NotFound:
            return None
        return record_from_object(obj)

    def create(self, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord:
        body = _body(self.namespace, name, record)
        body["metadata"].pop("resourceVersion", None)
        obj = self._call(self._api.create_namespaced_lease, self.namespace, body, timeout=timeout)
        return record_from_object(obj)

    def update(self, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord:
        obj = self._call(
            self._api.replace_namespaced_lease,
            name,
            self.namespace,
            _body(self.namespace, name, record),
            timeout=timeout,
        )
        return record_from_object(obj)

    def collect_garbage(self, timeout: float = 10.0) -> int:
        """Delete our leases that nobody holds (released on shutdown or de-selection), as the
        reference's lease GC, but with a resourceVersion precondition so a lease taken over
        since the list is never deleted. A 403 is ignored (no lease RBAC: feature never on)."""
        try:
            data = self._call(self._api.list_namespaced_lease, self.namespace, timeout=timeout)
        except Forbidden:
            return 0
        deleted = 0
        for obj in data.get("items") or []:
            meta = obj.get("metadata") or {}
            name = meta.get("name", "")
            if not name.startswith(LEASE_PREFIX) or (obj.get("spec") or {}).get("holderIdentity"):
                continue
            body = {"preconditions": {"resourceVersion": meta.get("resourceVersion")}}
            try:
                self._call(
                    self._api.delete_namespaced_lease,
                    name,
                    self.namespace,
                    body=body,
                    timeout=timeout,
                )
                deleted += 1
            except (Conflict, NotFound):
                continue  # taken over or already gone since the list
            except LeaseAPIError as e:
                log.warning("leaseClient.Delete(%s): %s", name, e)
        return deleted
