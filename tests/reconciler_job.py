"""A reconciler with the ``start()``/``stop()`` the tests call, its loop run in a runtime ``Job``
as the agent runs it (the reconciler itself starts no thread)."""

from __future__ import annotations

from typing import TypeVar

from agent.runtime import Job
from statedb.reconciler import Reconciler

R = TypeVar("R")


class JobReconciler(Reconciler[R]):
    _job: Job | None = None

    def start(self) -> None:
        """Run the loop in a job named after the reconciler (its thread has that name)."""
        if self._job is not None:
            raise RuntimeError(f"{self.name} was already started")
        self._job = Job(self.name, self.run, wake=self.wake)
        self._job.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop and wait for it; raises TimeoutError if it still runs after
        ``timeout`` seconds (an operation in progress is let finish). Idempotent."""
        if self._job is None:
            return
        if not self._job.stop(3600.0 if timeout is None else timeout):
            raise TimeoutError(f"{self.name} did not stop within {timeout} s")
