"""How many API requests this agent sends, and what its client rate limit needs to be.

Every answer the Kubernetes client reports (agent/k8s/client.py's observer hook, the same one the
metrics count) is counted here per second; the ``api-usage`` health row says the rate over the
last minute and what ``k8s-client-qps`` / ``k8s-client-burst`` the leases this node campaigns
for need by the sizing rule: 1.5 x renewed leases / renew deadline, and a burst twice that. In
the seed's lease mode every held lease is renewed, so all the leases count (worst case: this node
holds them all) and the heartbeat; in economy mode only the heartbeat is renewed, but a takeover
writes each lease once, and should be done within a renew deadline: the configured burst plus the
rate over one renew deadline must cover 1.5 x the leases. ``l2dbg status`` shows the row.
When the configured limit is below that, or the measured rate is at 90 % of it or more (the rule
assumes one renewal per renew deadline, the elector renews every retry period, and the other
requests add up), the agent logs one warning (again only after it was enough in between):
leases renewed late are lost, and the Services they carry flap.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

from agent.leases.churn import SIZING_MARGIN, needed_qps
from agent.logfmt import fields
from agent.runtime import Clock, Health, HealthReporter, RealClock

log = logging.getLogger("l2announcer.api-usage")

WINDOW = 60.0
"""Seconds the request rate is averaged over."""

FULL = 0.9
"""A measured rate at this share of the configured QPS counts as too low a limit: requests
already wait in the client-side limiter."""


class Observer(Protocol):
    def on_request(self, verb: str, code: str) -> None: ...
    def on_throttle(self, seconds: float) -> None: ...


class ApiUsage:
    """A request observer that counts, then passes each report on (to the metrics, if any)."""

    name = "api-usage"

    def __init__(
        self,
        qps: float,
        burst: int,
        renew_deadline: float,
        forward: Observer | None = None,
        clock: Clock | None = None,
        economy: bool = False,
    ) -> None:
        self.economy = economy
        self.qps = qps
        self.burst = burst
        self.renew_deadline = renew_deadline
        self._forward = forward
        self._clock = clock or RealClock()
        self._lock = threading.Lock()
        self._seconds: deque[list[int]] = deque()  # [second, requests], oldest first
        self._started = self._clock.monotonic()
        self.total = 0
        self.leases: Callable[[], int] = lambda: 0
        """How many leases this node campaigns for (set once the elector exists)."""
        self._warned = False
        self.health = HealthReporter(self.name, probe=self._probe)

    # -- the observer -----------------------------------------------------------------------------

    def on_request(self, verb: str, code: str) -> None:
        second = int(self._clock.monotonic())
        with self._lock:
            self.total += 1
            if self._seconds and self._seconds[-1][0] == second:
                self._seconds[-1][1] += 1
            else:
                self._seconds.append([second, 1])
            self._trim(second)
        if self._forward is not None:
            self._forward.on_request(verb, code)

    def on_throttle(self, seconds: float) -> None:
        if self._forward is not None:
            self._forward.on_throttle(seconds)

    # -- what it says ---------------------------------------------------------------------------

    def rate(self) -> float:
        """Requests per second over the last ``WINDOW`` (or since start, if shorter)."""
        now = self._clock.monotonic()
        with self._lock:
            self._trim(int(now))
            count = sum(n for _, n in self._seconds)
        return count / max(1.0, min(WINDOW, now - self._started))

    def need(self) -> tuple[int, int, int]:
        """(leases counted, QPS, burst) by the sizing rule; the heartbeat is one more lease."""
        leases = self.leases() + 1
        if self.economy:
            takeover = math.ceil((SIZING_MARGIN * leases - self.burst) / self.renew_deadline)
            qps = max(needed_qps(1, self.renew_deadline), takeover)
            return leases, qps, 2 * qps
        qps = needed_qps(leases, self.renew_deadline)
        return leases, qps, 2 * qps

    def _trim(self, second: int) -> None:
        while self._seconds and self._seconds[0][0] < second - WINDOW:
            self._seconds.popleft()

    def _probe(self) -> Health:
        leases, qps, burst = self.need()
        rate = self.rate()
        # The rate counts only once a whole window has passed: the start-up lists and the first
        # acquisitions are a burst, not a rate.
        full_window = self._clock.monotonic() - self._started >= WINDOW
        short = self.qps < qps or self.burst < burst or (full_window and rate >= FULL * self.qps)
        message = (
            f"{rate:.1f} requests/s (last {WINDOW:g}s); {leases} lease(s) need "
            f"k8s-client-qps {qps}, k8s-client-burst {burst}; configured {self.qps:g}, "
            f"{self.burst}" + (" (too low)" if short else "")
        )
        if short and not self._warned:
            log.warning(
                "The client rate limit is below what this node's leases need; renewals will "
                "wait, and leases be lost",
                extra=fields(
                    leases=leases, need_qps=qps, need_burst=burst, qps=self.qps, burst=self.burst
                ),
            )
        self._warned = short
        return Health.ok(message)
