"""A fake netlink: a scripted kernel listing, an event queue and injected errors."""

from __future__ import annotations

import queue
import threading

from agent.devices.source import NetlinkError, Update


class FakeNetlink:
    """What the fake sources read. Tests change ``listing`` and ``push`` events."""

    def __init__(self, listing: list[Update]) -> None:
        self.listing = list(listing)
        self.events: queue.Queue[Update | BaseException] = queue.Queue()
        self.opened = 0
        self.closed = 0
        self.fail_open = 0  # how many of the next opens fail
        self.lock = threading.Lock()

    def push(self, *updates: Update) -> None:
        for u in updates:
            self.events.put(u)

    def break_subscription(self, error: BaseException | None = None) -> None:
        self.events.put(error or NetlinkError("[Errno 105] No buffer space available"))

    def factory(self) -> FakeSource:
        return FakeSource(self)


class FakeSource:
    def __init__(self, net: FakeNetlink) -> None:
        self._net = net
        self._open = False

    def open(self) -> None:
        with self._net.lock:
            self._net.opened += 1
            if self._net.fail_open > 0:
                self._net.fail_open -= 1
                raise NetlinkError("subscribe failed")
        self._open = True

    def dump(self) -> list[Update]:
        assert self._open
        # A fresh subscription starts empty: events queued for the old one are gone.
        while not self._net.events.empty():
            self._net.events.get_nowait()
        return list(self._net.listing)

    def receive(self, timeout: float) -> list[Update]:
        assert self._open
        out: list[Update] = []
        try:
            item = self._net.events.get(timeout=timeout)
        except queue.Empty:
            return out
        while True:
            if isinstance(item, BaseException):
                raise item
            out.append(item)
            try:
                item = self._net.events.get_nowait()
            except queue.Empty:
                return out

    def close(self) -> None:
        if self._open:
            self._open = False
            with self._net.lock:
                self._net.closed += 1
