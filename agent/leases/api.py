"""What the elector needs from the Kubernetes API, and the outcomes it distinguishes."""

from __future__ import annotations

import enum
from dataclasses import dataclass
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


@dataclass(slots=True)
class SendTime:
    """When a request left the client-side rate limiter for the API server, in monotonic
    seconds; None while it has not (or when the API cannot tell).

    A throttled client can hold a request in its rate limiter for longer than a renew deadline.
    The elector counts a renewal from the moment it went out, not from when it was asked for,
    so a leader is not demoted for time it spent queueing behind its own client."""

    at: float | None = None


class LeaseAPI(Protocol):
    """Every call blocks for at most ``timeout`` seconds once sent (then raises LeaseAPIError);
    waiting in a client-side rate limiter comes first. An implementation that can tell records
    in ``sent.at`` when the request left that limiter."""

    def get(
        self, name: str, timeout: float, *, sent: SendTime | None = None
    ) -> LeaseRecord | None: ...

    def create(
        self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
    ) -> LeaseRecord: ...

    def update(
        self, name: str, record: LeaseRecord, timeout: float, *, sent: SendTime | None = None
    ) -> LeaseRecord:
        """PUT with ``record.resource_version`` as the precondition (Conflict if stale)."""
        ...


class CampaignState(enum.Enum):
    LEADING = "leading"
    FOLLOWING = "following"  # another node holds the lease: ``detail`` names it
    FAILING = "error"  # the last request failed: ``detail`` says why
    CAMPAIGNING = "campaigning"  # nobody holds it yet, or we have not heard back


@dataclass(frozen=True, slots=True)
class Campaign:
    """How one of this node's lease campaigns stands, as a value (metrics count by ``state``)."""

    state: CampaignState
    detail: str = ""

    def __str__(self) -> str:
        if self.state is CampaignState.FAILING:
            return f"error: {self.detail}"
        return f"{self.state.value} {self.detail}" if self.detail else self.state.value
