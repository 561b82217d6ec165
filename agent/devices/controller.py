"""The devices controller: a background thread that keeps ``devices`` in step with netlink.

    start() --> register the table initializer, start the thread
    thread:  open source (subscribe) -> dump -> full_sync (one txn, initializer done)
             -> receive changes, batch them for ``batch_interval`` -> apply_batch (one txn)
             on NetlinkError or any other failure: log, health "Degraded", close the source,
             wait ``restart_delay``, then start over with a fresh source and a full relist
    stop()  --> tell the thread, join it (the source is closed by the thread)

Netlink is lossy by design (the kernel drops events when the socket buffer is full), so the
only safe recovery is a fresh subscription and a complete listing. The controller runs in
whatever network namespace the process is in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.devices.options import DevicesOptions
from agent.devices.pyroute2_source import Pyroute2Source
from agent.devices.selection import kernel_supports_l3_devices
from agent.devices.source import NetlinkError, NetlinkSource, Update
from agent.devices.table_sync import DeviceTableSync
from common.tables.devices import DEVICES, Device
from statedb import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DevicesControllerConfig:
    """Timings of the devices controller (seconds).

    batch_interval: 0.1. How long changes are collected after the first one before they are
        written in one transaction: a link coming up brings a burst of link, address and route
        messages, and readers should see the device once, complete, not half-configured.
    restart_delay: 1.0. Wait after a netlink error before resubscribing and relisting, so a
        persistent failure does not spin.
    poll_interval: 0.2. Longest single wait for netlink messages; bounds how long stop() takes.
    dead_link_retention: 300. How long a deleted link's ifindex is remembered so that late
        address or route messages for it are ignored (a new link message clears it at once).
    """

    batch_interval: float = 0.1
    restart_delay: float = 1.0
    poll_interval: float = 0.2
    dead_link_retention: float = 300.0


class DevicesController:
    """Owns the ``devices`` table of ``db``. ``source_factory`` makes a fresh netlink source
    per (re)start (tests pass a fake); ``l3_devices_supported`` defaults to a kernel >= 5.8
    check done once here."""

    def __init__(
        self,
        db: Database,
        options: DevicesOptions | None = None,
        *,
        config: DevicesControllerConfig | None = None,
        source_factory: Callable[[], NetlinkSource] = Pyroute2Source,
        l3_devices_supported: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._config = config or DevicesControllerConfig()
        self._source_factory = source_factory
        self._clock = clock
        l3 = kernel_supports_l3_devices() if l3_devices_supported is None else l3_devices_supported
        self._sync = DeviceTableSync(
            db,
            options or DevicesOptions(),
            l3_devices_supported=l3,
            dead_link_retention=self._config.dead_link_retention,
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._health = "Stopped"
        self._restarts = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("devices controller already started")
        self._sync.register_initializer()
        self._stopping.clear()
        self._set_health("Starting: listing links, addresses and routes")
        self._thread = threading.Thread(target=self._run, name="devices-controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("devices controller did not stop within %.1fs", timeout)
        self._set_health("Stopped")

    def wait_initialized(self, timeout: float | None) -> bool:
        """Block until the first full listing is committed (True) or the timeout passes."""
        return self._db.wait_initialized(DEVICES, timeout)

    # -- observation ----------------------------------------------------------------------------

    def health(self) -> str:
        """One line: ``OK: ...``, ``Starting: ...``, ``Degraded: ...`` or ``Stopped``."""
        with self._lock:
            return self._health

    @property
    def restarts(self) -> int:
        """How many times the subscription was rebuilt after an error."""
        return self._restarts

    def selected_devices(self) -> list[Device]:
        """Selected rows as last committed, in ifindex order."""
        return [r for _i, r in sorted(self._sync.rows.items()) if r.selected]

    def _set_health(self, text: str) -> None:
        with self._lock:
            self._health = text

    def _ok(self) -> None:
        rows = self._sync.rows
        selected = self._sync.selected_names()
        names = f" ({' '.join(selected)})" if selected else ""
        self._set_health(f"OK: {len(rows)} devices, {len(selected)} selected{names}")

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            source: NetlinkSource | None = None
            try:
                source = self._source_factory()
                source.open()
                self._sync.full_sync(source.dump(), self._clock())
                self._ok()
                self._follow(source)
            except NetlinkError as e:
                self._failed(f"netlink error: {e}")
            except Exception as e:
                # A bug or a database error must not end the controller silently.
                log.exception("devices controller failed")
                self._failed(f"{type(e).__name__}: {e}")
            finally:
                if source is not None:
                    try:
                        source.close()
                    except Exception:
                        log.exception("closing the netlink source failed")
            if not self._stopping.is_set():
                self._stopping.wait(self._config.restart_delay)

    def _failed(self, what: str) -> None:
        if self._stopping.is_set():
            return
        self._restarts += 1
        log.warning("%s; relisting in %gs", what, self._config.restart_delay)
        self._set_health(f"Degraded: {what}; relisting in {self._config.restart_delay:g}s")

    def _follow(self, source: NetlinkSource) -> None:
        """Receive changes and write them in batches until stopped (or an error is raised)."""
        cfg = self._config
        pending: list[Update] = []
        deadline: float | None = None
        while not self._stopping.is_set():
            wait = cfg.poll_interval
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - self._clock()))
            updates = source.receive(wait)
            if updates:
                if deadline is None:
                    deadline = self._clock() + cfg.batch_interval
                pending.extend(updates)
            if deadline is not None and self._clock() >= deadline:
                batch, pending, deadline = pending, [], None
                if self._sync.apply_batch(batch, self._clock()):
                    self._ok()


__all__ = ["DevicesController", "DevicesControllerConfig"]
