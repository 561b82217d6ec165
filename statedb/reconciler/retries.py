"""Per-row retries with exponential backoff, ordered by when they are due.

A row whose operation failed is remembered here with the number of consecutive failures and the
last error, and is due again ``retry_min * 2**(failures-1)`` seconds later, capped at
``retry_max``. The entry stays after it is popped for a retry, so the next failure of the same
row doubles the delay; only ``clear`` (the operation succeeded, or the row changed) forgets it and
resets the backoff. The entries are also the reconciler's list of current errors for health.

Not thread-safe: only the reconciler's loop touches it (health reads a copy under its lock).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def backoff(failures: int, retry_min: float, retry_max: float) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1-based)."""
    exponent = max(0, failures - 1)
    if exponent > 64:  # 2**64 * any sane retry_min is far beyond any cap; avoid huge floats
        return retry_max
    return float(min(retry_max, retry_min * 2**exponent))


@dataclass(slots=True)
class RetryItem(Generic[K, V]):
    key: K
    value: V  # what the retry needs: the deleted row for a delete, the row for an update
    delete: bool
    failures: int  # consecutive failures so far
    error: str  # the last failure's message
    delay: float  # seconds between the last failure and ``due``
    due: float  # monotonic seconds
    queued: bool  # still waiting in the heap (False once popped, until cleared or re-added)


class RetryQueue(Generic[K, V]):
    def __init__(self, retry_min: float, retry_max: float) -> None:
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._items: dict[K, RetryItem[K, V]] = {}
        # (due, sequence, key); stale heap entries (cleared or re-added) are skipped on pop.
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._entry_seq: dict[K, int] = {}

    def add(self, key: K, value: V, *, delete: bool, error: str, now: float) -> RetryItem[K, V]:
        """Record a failure of ``key`` at monotonic ``now``; returns the scheduled entry."""
        old = self._items.get(key)
        failures = 1 if old is None or old.delete != delete else old.failures + 1
        delay = backoff(failures, self.retry_min, self.retry_max)
        item = RetryItem(key, value, delete, failures, error, delay, now + delay, True)
        self._items[key] = item
        self._push(item)
        return item

    def _push(self, item: RetryItem[K, V]) -> None:
        """Queue ``item`` at its due time; any older heap entry of its key becomes stale."""
        self._seq += 1
        self._entry_seq[item.key] = self._seq
        heapq.heappush(self._heap, (item.due, self._seq, item.key))

    def clear(self, key: K) -> RetryItem[K, V] | None:
        """Forget ``key`` and its failure count (it succeeded, or it changed)."""
        self._entry_seq.pop(key, None)
        return self._items.pop(key, None)

    def get(self, key: K) -> RetryItem[K, V] | None:
        return self._items.get(key)

    def _drop_stale(self) -> None:
        while self._heap:
            _due, seq, key = self._heap[0]
            if self._entry_seq.get(key) == seq:
                return
            heapq.heappop(self._heap)

    def next_due(self) -> float | None:
        """Monotonic time of the earliest queued retry, or None."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int) -> list[RetryItem[K, V]]:
        """Up to ``limit`` entries due at ``now``, earliest first; they stay known (not queued)."""
        out: list[RetryItem[K, V]] = []
        while len(out) < limit:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                break
            _due, _seq, key = heapq.heappop(self._heap)
            del self._entry_seq[key]
            item = self._items[key]
            item.queued = False
            out.append(item)
        return out

    def requeue_popped(self, now: float) -> None:
        """Queue again, after their last delay, the entries popped by a round that then failed
        before re-adding or clearing them (the reconciler's recovery from an unexpected error)."""
        for item in self._items.values():
            if not item.queued:
                item.due = now + item.delay
                item.queued = True
                self._push(item)

    def items(self) -> list[RetryItem[K, V]]:
        """Every remembered failure (queued or being retried)."""
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
