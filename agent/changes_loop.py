"""A module that follows one table: a thread hands each batch of the table's changes to
``handle``, woken by the commits themselves (``Consumer.wait``, no polling). The change consumer
is registered on ``start`` and unregistered on ``stop``; a failing batch is logged and the loop
carries on with the next one."""

from __future__ import annotations

import logging
import threading
from typing import Any, Generic, TypeVar

from statedb import Change, Consumer, Database, Table

log = logging.getLogger("l2announcer.agent")

R = TypeVar("R")


class ChangesLoop(Generic[R]):
    def __init__(self, db: Database, table: Table[R], name: str) -> None:
        self.db = db
        self.table = table
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer[R] | None = None

    def handle(self, changes: list[Change[R]], first: bool) -> None:
        """One batch, in revision order; ``first`` is the table's contents at start."""
        raise NotImplementedError

    def start(self) -> None:
        self._consumer = self.db.register_consumer(self.name, self.table)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.db.notify_waiters()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._consumer is not None:
            self._consumer.close()

    def _run(self) -> None:
        consumer: Any = self._consumer
        first = True
        while not self._stop.is_set():
            try:
                self.handle(consumer.changes(), first)
            except Exception:
                log.exception("%s: handling a batch of %s changes failed", self.name, self.table)
            first = False
            consumer.wait(timeout=5.0, until=self._stop.is_set)
