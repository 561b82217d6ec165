"""What the reconciler needs from a clock. The caller injects one (the agent's runtime clock, or a
fake one in tests): the reconciler never reads ``time`` itself, so tests move time by hand.

Retry and prune deadlines are kept in ``monotonic()`` seconds, so a wall-clock step can neither
fire every retry at once nor stall them; ``now()`` only stamps ``Status.updated_at`` for display.
"""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences are meaningful."""
        ...

    def now(self) -> float:
        """Wall-clock seconds since the epoch, for display (``Status.updated_at``)."""
        ...

    def real_timeout(self, seconds: float) -> float | None:
        """How long to block (real seconds) for ``seconds`` of this clock to pass; None: until
        woken."""
        ...
