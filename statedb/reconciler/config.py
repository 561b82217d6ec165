"""Every duration and limit of a reconciler, with its unit, default and reason, in one place.

The defaults are cilium/statedb's ``reconciler``'s; the agent passes its own values
where it has a reason to (see agent configuration). Durations are seconds as floats.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Config:
    retry_min: float = 0.1
    """Seconds before the first retry of a failed operation (default 0.1 s). Later retries of the
    same row wait ``retry_min * 2**n`` after its n-th consecutive failure (n from 0), so a
    transient failure heals quickly and a persistent one does not load the target."""

    retry_max: float = 60.0
    """Cap of the retry delay, seconds (default 60 s): a failing row is still tried every
    minute, so it recovers within a minute of the target healing."""

    prune_interval: float = 3600.0
    """Seconds between prunes (default 1 h, cilium/statedb's ``PruneInterval``). The first prune
    runs as soon as the table is initialized; the periodic ones only catch extras that something
    else put into the target, so they can be rare. A failed prune waits for the next interval."""

    round_size: int = 1000
    """Most rows acted on in one round (changes plus due retries; default 1000). Statuses are
    committed once per round, so a large burst still reports progress in bounded steps."""

    error_backoff: float = 1.0
    """Seconds the loop pauses after an unexpected exception of its own (not of an operation)
    before trying again (default 1 s), so a persistent bug logs once a second, not in a hot
    loop."""

    def __post_init__(self) -> None:
        if not self.retry_min > 0:
            raise ValueError(f"retry_min must be > 0 seconds, got {self.retry_min}")
        if self.retry_max < self.retry_min:
            raise ValueError(
                f"retry_max ({self.retry_max} s) must be >= retry_min ({self.retry_min} s)"
            )
        if not self.prune_interval > 0:
            raise ValueError(f"prune_interval must be > 0 seconds, got {self.prune_interval}")
        if self.round_size < 1:
            raise ValueError(f"round_size must be >= 1, got {self.round_size}")
        if self.error_backoff < 0:
            raise ValueError(f"error_backoff must be >= 0 seconds, got {self.error_backoff}")
