"""The retry queue alone: backoff formula, ordering, reset on clear, recovery requeue."""

from __future__ import annotations

import pytest

from statedb.reconciler import RetryQueue, backoff
from statedb.reconciler.config import Config


def test_backoff_doubles_from_min_and_is_capped() -> None:
    assert [backoff(n, 0.1, 60.0) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])
    assert backoff(11, 0.1, 60.0) == 60.0  # 0.1 * 2**10 = 102.4 -> capped
    assert backoff(10_000, 0.1, 60.0) == 60.0  # no overflow


def test_repeated_failures_of_a_key_grow_its_delay_until_cleared() -> None:
    q: RetryQueue[str, str] = RetryQueue(1.0, 5.0)
    delays = []
    now = 0.0
    for _ in range(5):
        item = q.add("a", "row", delete=False, error="e", now=now)
        delays.append(item.delay)
        (popped,) = q.pop_due(item.due, limit=10)
        assert popped is item and not popped.queued
        now = item.due
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    q.clear("a")
    assert q.add("a", "row", delete=False, error="e", now=now).delay == 1.0


def test_pop_due_returns_due_items_earliest_first_within_the_limit() -> None:
    q: RetryQueue[str, str] = RetryQueue(1.0, 60.0)
    q.add("late", "x", delete=False, error="e", now=5.0)  # due 6
    q.add("early", "x", delete=False, error="e", now=0.0)  # due 1
    q.add("mid", "x", delete=True, error="e", now=2.0)  # due 3
    assert q.next_due() == 1.0
    assert q.pop_due(0.5, limit=10) == []
    assert [i.key for i in q.pop_due(3.0, limit=1)] == ["early"]
    assert [i.key for i in q.pop_due(3.0, limit=10)] == ["mid"]
    assert q.next_due() == 6.0
    assert len(q) == 3  # popped entries stay known (their errors, their failure counts)


def test_clear_and_re_add_leave_no_stale_heap_entries() -> None:
    q: RetryQueue[str, str] = RetryQueue(1.0, 60.0)
    q.add("a", "x", delete=False, error="e", now=0.0)  # due 1
    q.clear("a")
    assert q.next_due() is None
    assert q.pop_due(100.0, limit=10) == []
    q.add("b", "x", delete=False, error="e", now=0.0)  # due 1
    q.add("b", "x", delete=False, error="e", now=10.0)  # re-added: due 12, the old entry is stale
    assert q.pop_due(11.0, limit=10) == []
    assert [i.key for i in q.pop_due(12.0, limit=10)] == ["b"]


def test_switching_between_update_and_delete_starts_a_new_count() -> None:
    q: RetryQueue[str, str] = RetryQueue(1.0, 60.0)
    q.add("a", "x", delete=False, error="e", now=0.0)
    q.add("a", "x", delete=False, error="e", now=0.0)
    assert q.add("a", "x", delete=True, error="e", now=0.0).failures == 1


def test_requeue_popped_schedules_again_after_the_last_delay() -> None:
    q: RetryQueue[str, str] = RetryQueue(1.0, 60.0)
    q.add("a", "x", delete=False, error="e", now=0.0)
    q.add("b", "x", delete=False, error="e", now=5.0)
    q.pop_due(1.0, limit=10)  # "a" popped, then the round failed
    q.requeue_popped(now=2.0)
    assert q.next_due() == 3.0
    assert [i.key for i in q.pop_due(6.0, limit=10)] == ["a", "b"]


def test_config_defaults_are_the_documented_ones() -> None:
    c = Config()
    assert (c.retry_min, c.retry_max, c.prune_interval, c.round_size) == (0.1, 60.0, 3600.0, 1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry_min": 0}, "retry_min must be > 0"),
        ({"retry_min": 2, "retry_max": 1}, "retry_max"),
        ({"prune_interval": 0}, "prune_interval"),
        ({"round_size": 0}, "round_size"),
        ({"error_backoff": -1}, "error_backoff"),
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**kwargs)  # type: ignore[arg-type]
