"""One client-side rate limiter shared by every request the agent makes (``k8s-client-qps``,
``k8s-client-burst``), as client-go's token bucket: ``burst`` requests at once, refilled at
``qps`` per second. A request that had to wait a second or more is logged with client-go's line
("Waited for ... due to client-side throttling"), so an operator who greps for it, as for a
Cilium agent whose QPS is too low for its leases, finds it here too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from common.durations import format_duration

log = logging.getLogger("l2announcer.k8s")

THROTTLE_LOG_THRESHOLD = 1.0  # seconds, as client-go


class RateLimiter:
    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("a rate limiter needs qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take a token; returns how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def wait(self, verb: str = "", url: str = "") -> float:
        """Block until the request may go; returns the seconds waited (and logs a long wait)."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        if delay >= THROTTLE_LOG_THRESHOLD:
            log.info(
                "Waited for %s due to client-side throttling, not priority and fairness, "
                "request: %s:%s",
                format_duration(round(delay, 3)),
                verb,
                url,
            )
        return delay
