"""A fixed pool of worker threads for blocking calls made on a job's behalf (the elector keeps
several Lease requests in flight at once, each blocking on the network for up to its timeout).

Its threads are the runtime's like a Job's, so every thread of the agent is created in this
package; the owning job shuts the pool down when it stops, dropping calls not yet begun.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class WorkerPool:
    def __init__(self, name: str, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, got {workers}")
        self.name = name
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=name)

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self) -> None:
        """Drop the calls not yet begun; calls in flight finish on their own (bounded by their
        request timeouts), so shutdown never waits on the network."""
        self._executor.shutdown(wait=False, cancel_futures=True)
