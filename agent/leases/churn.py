"""Lease churn as health: leases this node keeps losing and taking back are a fault, not "OK".

A leader that cannot renew in time (a client rate limit below what its leases need, a slow or
unreachable API server) loses its leases, takes them back a moment later, loses them again: its
ARP answers come and go while every module looks fine. The elector reports each involuntary loss
(renew deadline passed, lease taken by another node), each failed renewal and each acquisition
here; when, within ``window`` seconds, they add up to ``threshold`` or more, the elector's health
turns Degraded with the counts and the most likely cause:

- the client-side rate limit (``k8s-client-qps``) below what the leases this node led in the
  window need: ``SIZING_MARGIN`` x leases / renew deadline (the seed's rule, leases / renew
  deadline, with room for jitter, followers' and status requests; the lab sizes its agents so);
- else requests that waited long in the client-side rate limiter;
- else the last failed renewal's error, or that renewals came back after the deadline.

Nothing here reads a clock: times are passed in (the elector's monotonic clock).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from common.durations import format_duration

WINDOW = 60.0  # seconds: long enough to see a flap cycle at the default timers (15s/5s/2s)
THRESHOLD = 3  # losses + re-acquisitions + failed renewals; one API blip gives 2 per lease
SIZING_MARGIN = 1.5
INVOLUNTARY = ("renew deadline passed", "lease taken by")


@dataclass(frozen=True, slots=True)
class _Event:
    at: float
    kind: str  # lost | reacquired | failed
    detail: str


def needed_qps(leases: int, renew_deadline: float) -> int:
    """Requests per second that ``leases`` held leases need: the seed's sizing rule (leases /
    renew deadline) with ``SIZING_MARGIN``."""
    return math.ceil(SIZING_MARGIN * leases / renew_deadline)


class ChurnMonitor:
    def __init__(
        self,
        renew_deadline: float,
        qps: float | None = None,
        window: float = WINDOW,
        threshold: int = THRESHOLD,
    ) -> None:
        self.renew_deadline = renew_deadline
        self.qps = qps  # the client-side rate limit, if known
        self.window = window
        self.threshold = threshold
        self._events: deque[_Event] = deque()
        self._lost_at: dict[str, float] = {}  # lease -> last involuntary loss
        self._led_at: dict[str, float] = {}  # lease -> last time we started leading it
        self._waits: deque[tuple[float, float]] = deque()  # (at, seconds waited client-side)

    # -- what the elector reports --------------------------------------------------------------

    def lost(self, lease: str, reason: str, now: float) -> None:
        if not reason.startswith(INVOLUNTARY) or reason == "lease taken by nobody (released)":
            return  # de-selected, stopping: not churn
        self._lost_at[lease] = now
        self._events.append(_Event(now, "lost", reason))

    def acquired(self, lease: str, now: float) -> None:
        self._led_at[lease] = now
        lost = self._lost_at.get(lease)
        if lost is not None and now - lost <= self.window:
            self._events.append(_Event(now, "reacquired", ""))

    def renew_failed(self, lease: str, message: str, now: float) -> None:
        self._events.append(_Event(now, "failed", message))

    def waited(self, seconds: float, now: float) -> None:
        """A lease request waited ``seconds`` on this side before it was sent (rate limiter)."""
        if seconds >= self.renew_deadline / 4:  # only a wait that long counts (_cause)
            self._waits.append((now, seconds))

    # -- health --------------------------------------------------------------------------------

    def _prune(self, now: float) -> None:
        start = now - self.window
        while self._events and self._events[0].at < start:
            self._events.popleft()
        while self._waits and self._waits[0][0] < start:
            self._waits.popleft()
        for d in (self._lost_at, self._led_at):
            for lease in [k for k, t in d.items() if t < start]:
                del d[lease]

    def problem(self, now: float, leading: set[str] | frozenset[str] = frozenset()) -> str:
        """Why the leases churn ("" when they do not): counts in the window and the cause."""
        self._prune(now)
        counts = {"lost": 0, "reacquired": 0, "failed": 0}
        for e in self._events:
            counts[e.kind] += 1
        if sum(counts.values()) < self.threshold:
            return ""
        summary = (
            f"lease churn in the last {format_duration(self.window)}: {counts['lost']} lost, "
            f"{counts['reacquired']} re-acquired, {counts['failed']} failed renewal(s)"
        )
        return f"{summary}; {self._cause(leading)}"

    def _cause(self, leading: set[str] | frozenset[str]) -> str:
        led = len(set(self._led_at) | set(leading))
        deadline = format_duration(self.renew_deadline)
        if self.qps is not None and led:
            need = needed_qps(led, self.renew_deadline)
            if self.qps < need:
                return (
                    f"client-side throttling: {self.qps:g} QPS below the {need} QPS that {led} "
                    f"leases at {deadline} renew deadline need"
                )
        longest = max((w for _, w in self._waits), default=0.0)
        if longest >= self.renew_deadline / 4:
            limit = f" ({self.qps:g} QPS)" if self.qps is not None else ""
            return (
                f"client-side throttling: lease requests waited up to "
                f"{format_duration(round(longest, 1))} for the client rate limit{limit}"
            )
        failures = [e.detail for e in self._events if e.kind == "failed" and e.detail]
        if failures:
            return f"last failed renewal: {failures[-1]}"
        return f"renewals not answered within the {deadline} renew deadline (a slow API server?)"
