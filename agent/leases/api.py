"""What the elector needs from the Kubernetes API, and the outcomes it distinguishes."""

from __future__ import annotations

from typing import Protocol

from agent.leases.record import LeaseRecord


class LeaseAPIError(Exception):
    """A failed request; the message is the API's (logged as is)."""


class Conflict(LeaseAPIError):
    """409: the lease changed since the resourceVersion we sent, or it already exists."""


class NotFound(LeaseAPIError):
    """404: no such lease."""


class Forbidden(LeaseAPIError):
    """403: RBAC refuses; logged with the API's message and retried, never fatal."""


class LeaseAPI(Protocol):
    """Every call blocks for at most ``timeout`` seconds (then raises LeaseAPIError)."""

    def get(self, name: str, timeout: float) -> LeaseRecord | None: ...

    def create(self, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord: ...

    def update(self, name: str, record: LeaseRecord, timeout: float) -> LeaseRecord:
        """PUT with ``record.resource_version`` as the precondition (Conflict if stale)."""
        ...
