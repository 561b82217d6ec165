"""Leases over the official client: the elector's LeaseAPI, the lease mapping for the leases
reflector, and lease GC.

Bodies are plain JSON (``_preload_content=False``) so MicroTime strings go to the server exactly
as the elector wrote them (six fractional digits) and come back unparsed.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent.k8s.reflector import Obj, RowMapping
from agent.leases.api import Conflict, Forbidden, LeaseAPIError, NotFound, SendTime
from agent.leases.record import LeaseRecord, row_from_record
from common.leases import heartbeat_node, is_agent_lease
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
    if not is_agent_lease(name):  # the Services' leases and the nodes' heartbeats
        return None
    return row_from_record(name, record_from_object(obj))


LEASE_MAPPING = RowMapping(LEASES, lease_row, lambda o: (o["metadata"]["name"],))


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
    """The elector's LeaseAPI over ``CoordinationV1Api``, on a client of its own that shares
    ``api_client``'s rate limiter (see ``lease_api_client``). ``monotonic`` is the clock of
    ``SendTime``: the elector's, so it can subtract its own timestamps."""

    def __init__(
        self, api_client: Any, namespace: str, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        import kubernetes

        from agent.k8s.client import lease_api_client

        self._client, self._limits = lease_api_client(api_client)
        self._api = kubernetes.client.CoordinationV1Api(self._client)
        self._exc = kubernetes.client.ApiException
        self._url = (
            f"{self._client.configuration.host}/apis/coordination.k8s.io/v1/namespaces/"
            f"{namespace}/leases"
        )
        self._monotonic = monotonic
        self.namespace = namespace

    def close(self) -> None:
        """Close the lease client's connections (the ``api_client`` it was made from stays)."""
        self._client.close()

    def _call(
        self,
        verb: str,
        name: str,
        fn: Any,
        *args: Any,
        timeout: float,
        sent: SendTime | None = None,
        **kwargs: Any,
    ) -> Obj:
        # Past the client's pydantic argument validation: it turns our MicroTime strings into
        # datetimes and back with isoformat(), which drops a .000000 fraction, and the API server
        # refuses a MicroTime without one (400, "cannot parse ... as .000000").
        raw = getattr(fn, "raw_function", None)
        if raw is not None:
            fn = functools.partial(raw, fn.__self__)
        # The lease client's transport does not wait on the shared limiter: the wait is here, so
        # the moment the request leaves it is known. The URL is for the throttling log line.
        if heartbeat_node(name) is None:
            self._limits.wait(verb, f"{self._url}/{name}" if name else self._url)
        # A node heartbeat (one request per retry period at most, or a fence) bypasses the
        # limiter: queued behind the Service leases, a late renewal in economy mode drops every
        # Service the node holds; taking tokens, it would make the Services' renewals wait
        # instead (at the seed's fast timers one Service's renewals alone use the default 5 QPS,
        # and they then missed their 1 s deadline). The budget is exceeded by that rate only.
        if sent is not None:
            sent.at = self._monotonic()
        try:
            resp = fn(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        except self._exc as e:
            raise _error(e) from None
        except Exception as e:  # urllib3 timeouts, resets: the elector retries
            raise LeaseAPIError(f"{type(e).__name__}: {e}") from None
        return dict(json.loads(resp.data))

    def get(self, name: str, timeout: float, *, sent: SendTime | None = None) -> LeaseRecord | None:
        try:
            obj = self._call(
                "GET",
                name,
                self._api.read_namespaced_lease,
                name,
                self.namespace,
                timeout=timeout,
                sent=sent,
            )
        except NotFound:
            return None
        return record_from_object(obj)

    def create(
        self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
    ) -> LeaseRecord:
        body = _body(self.namespace, name, record)
        body["metadata"].pop("resourceVersion", None)
        obj = self._call(
            "POST",
            "",
            self._api.create_namespaced_lease,
            self.namespace,
            body,
            timeout=timeout,
            sent=sent,
        )
        return record_from_object(obj)

    def update(
        self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
    ) -> LeaseRecord:
        obj = self._call(
            "PUT",
            name,
            self._api.replace_namespaced_lease,
            name,
            self.namespace,
            _body(self.namespace, name, record),
            timeout=timeout,
            sent=sent,
        )
        return record_from_object(obj)

    def collect_garbage(self, timeout: float = 10.0) -> int:
        """Delete our leases that nobody holds (released on shutdown or de-selection; a node's
        heartbeat released by its agent's planned stop), as Cilium's lease GC does, but with a resourceVersion precondition so a lease taken over
        since the list is never deleted. A 403 is ignored (no lease RBAC: feature never on)."""
        try:
            return len(self.delete_unused(timeout))
        except Forbidden:
            return 0

    def delete_unused(self, timeout: float = 10.0, *, expired_at: float | None = None) -> list[str]:
        """Delete our leases that nobody holds and, given ``expired_at`` (a wall-clock time),
        also those whose holder has not renewed them within their duration before it: what is
        left once every agent has stopped (uninstall). Returns the names deleted.

        Each delete has the listed resourceVersion as precondition: a lease renewed or taken
        over since the list is kept. Raises Forbidden when the list is refused.
        """
        data = self._call(
            "GET", "", self._api.list_namespaced_lease, self.namespace, timeout=timeout
        )
        unused = []
        for obj in data.get("items") or []:
            meta = obj.get("metadata") or {}
            name = meta.get("name", "")
            if is_agent_lease(name) and _unused(obj, expired_at):
                unused.append((name, str(meta.get("resourceVersion", ""))))
        return self.delete_versions(unused, timeout)

    def delete_versions(self, leases: list[tuple[str, str]], timeout: float = 10.0) -> list[str]:
        """Delete each (name, resourceVersion) with that resourceVersion as precondition, so a
        lease written since it was seen is kept. Returns the names deleted. The agent's GC passes
        the released leases of its watched ``leases`` table: no list request, and no request at
        all while there is nothing to collect."""
        deleted = []
        for name, rv in leases:
            body = {"preconditions": {"resourceVersion": rv}}
            try:
                self._call(
                    "DELETE",
                    name,
                    self._api.delete_namespaced_lease,
                    name,
                    self.namespace,
                    body=body,
                    timeout=timeout,
                )
                deleted.append(name)
            except (Conflict, NotFound):
                continue  # taken over or already gone since seen
            except LeaseAPIError as e:
                log.warning("leaseClient.Delete(%s): %s", name, e)
        return deleted

    def list_names(self, timeout: float = 10.0) -> list[str]:
        """The names of our leases (the Services' and the nodes' heartbeats) that exist now."""
        data = self._call(
            "GET", "", self._api.list_namespaced_lease, self.namespace, timeout=timeout
        )
        names = ((o.get("metadata") or {}).get("name", "") for o in data.get("items") or [])
        return sorted(n for n in names if is_agent_lease(n))


def _unused(obj: Obj, expired_at: float | None) -> bool:
    """Nobody holds the lease, or (given ``expired_at``) its holder stopped renewing it: its
    renewTime (or acquireTime) plus its duration is before ``expired_at``. A lease whose times
    cannot be read counts as held: deleting it is the mistake that cannot be undone."""
    spec = obj.get("spec") or {}
    if not spec.get("holderIdentity"):
        return True
    if expired_at is None:
        return False
    stamp = spec.get("renewTime") or spec.get("acquireTime") or ""
    try:
        renewed = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        duration = int(spec.get("leaseDurationSeconds") or 0)
    except (AttributeError, TypeError, ValueError):
        return False
    return duration > 0 and renewed + duration < expired_at
