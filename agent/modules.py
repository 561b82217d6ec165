"""Small pieces the agent wires together: the health publisher, the config table writer, the
lease GC job and L2 pod announcements."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

from agent.changes_loop import ChangesLoop
from agent.config import KEYS, Config, display_value
from common.tables.config import CONFIG, ConfigEntry
from common.tables.health import HEALTH, Health
from common.tables.pods import PODS, Pod
from statedb import Change, Database

log = logging.getLogger("l2announcer.agent")


def write_config(db: Database, config: Config, sources: Mapping[str, str]) -> None:
    with db.write_txn(CONFIG) as txn:
        for k in KEYS:
            value = display_value(k, config.value(k.name))
            txn.upsert(CONFIG, ConfigEntry(k.name, k.go_name, value, sources.get(k.name, "")))


def _level(message: str) -> tuple[str, str]:
    for level in ("Degraded", "Starting", "Stopped"):
        if message.startswith(level):
            return level, message.removeprefix(level).lstrip(":, ")
    return "OK", message.removeprefix("OK").lstrip(":, ")


HEARTBEAT = "agent"


class HealthPublisher:
    """Every second, each module's health string into the ``health`` table (a row changes only
    when its level or message does; ``since`` moves only when the level does)."""

    def __init__(self, db: Database, interval: float = 1.0) -> None:
        self.db = db
        self.interval = interval
        self.sources: dict[str, Callable[[], str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, module: str, health: Callable[[], str]) -> None:
        self.sources[module] = health

    def publish(self) -> None:
        now = time.time()
        with self.db.write_txn(HEALTH) as txn:
            for module, fn in list(self.sources.items()):
                try:
                    level, message = _level(fn())
                except Exception as e:  # a health probe must not take the publisher down
                    level, message = "Degraded", f"health check failed: {e}"
                old = txn.get(HEALTH, module)
                if old is not None and (old.level, old.message) == (level, message):
                    continue  # unchanged: no write, no revision
                since = old.since if old is not None and old.level == level else now
                txn.upsert(HEALTH, Health(module, level, message, since, now))
            # The heartbeat the liveness probe reads: proof this loop (and the process) runs.
            old = txn.get(HEALTH, HEARTBEAT)
            since = old.since if old is not None else now
            txn.upsert(HEALTH, Health(HEARTBEAT, "OK", f"pid {os.getpid()}", since, now))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish()
            except Exception:
                log.exception("publishing health failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class Periodic:
    """Runs ``fn`` every ``interval`` seconds in a thread (first run after ``first``)."""

    def __init__(
        self, name: str, interval: float, fn: Callable[[], object], first: float = 0
    ) -> None:
        self.name = name
        self.interval = interval
        self.fn = fn
        self.first = first
        self.error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = self.first
        while not self._stop.wait(delay):
            try:
                self.fn()
                self.error = ""
            except Exception as e:
                self.error = str(e)
                log.warning("%s: %s", self.name, e)
            delay = self.interval

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def health(self) -> str:
        return f"Degraded: {self.error}" if self.error else "OK"


class PodAnnouncer(ChangesLoop[Pod]):
    """L2 pod announcements (reference §7.2): one gratuitous ARP burst per pod on this node when
    it gets an IPv4 address, on the configured interface; IPv4 only."""

    def __init__(self, db: Database, interface: str, announce: Callable[[str, int], None]) -> None:
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError as e:
            raise RuntimeError(
                f'gratuitous arp sender interface "{interface}" not found: {e.strerror}'
            ) from None
        super().__init__(db, PODS, "pod-announcer")
        self.interface = interface
        self._announce = announce
        # Per pod name: the uid seen last and the addresses already announced for it.
        self._seen: dict[tuple[str, str], tuple[str, set[str]]] = {}
        self.sent = 0

    def handle(self, changes: list[Change[Pod]], first: bool) -> None:
        for ch in changes:
            key = (ch.row.namespace, ch.row.name)
            if ch.deleted:
                self._seen.pop(key, None)
                continue
            if ch.row.host_network:
                continue
            uid, known = self._seen.get(key, (ch.row.uid, set()))
            if uid != ch.row.uid:
                # Re-created under the same name between two reads: the delete was coalesced
                # away, but the new pod's (possibly same) address needs its own burst.
                known = set()
            self._seen[key] = (ch.row.uid, known)
            for ip in ch.row.ips:
                if ip in known or ipaddress.ip_address(ip).version != 4:
                    continue
                known.add(ip)
                try:
                    self._announce(ip, self.ifindex)
                    self.sent += 1
                except Exception as e:
                    log.warning("Failed to send gratuitous arp: %s %s: %s", key, ip, e)
