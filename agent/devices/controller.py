"""The devices controller: a background job that keeps ``devices`` in step with netlink.

    start() --> register the table initializer, start the job
    job:     open source (subscribe) -> dump -> full_sync (one txn, initializer done)
             -> receive changes, batch them for ``batch_interval`` -> apply_batch (one txn)
             on NetlinkError or any other failure: log, health Degraded, close the source,
             wait ``restart_delay``, then start over with a fresh source and a full relist
    stop()  --> stop the job and wait for it (the source is closed by the job)

Netlink is lossy by design (the kernel drops events when the socket buffer is full), so the
only safe recovery is a fresh subscription and a complete listing. The controller runs in
whatever network namespace the process is in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from agent.devices.options import DevicesOptions
from agent.devices.pyroute2_source import Pyroute2Source
from agent.devices.selection import kernel_supports_l3_devices
from agent.devices.source import NetlinkError, NetlinkSource, Update
from agent.devices.table_sync import DeviceTableSync
from agent.runtime import Clock, Health, HealthReporter, Job, RealClock
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
        clock: Clock | None = None,
    ) -> None:
        self.name = "devices"
        self._db = db
        self._config = config or DevicesControllerConfig()
        self._source_factory = source_factory
        self._clock = clock or RealClock()
        l3 = kernel_supports_l3_devices() if l3_devices_supported is None else l3_devices_supported
        self._sync = DeviceTableSync(
            db,
            options or DevicesOptions(),
            l3_devices_supported=l3,
            dead_link_retention=self._config.dead_link_retention,
        )
        self.health = HealthReporter(self.name, initial=Health.stopped())
        self._job = Job("devices-controller", self._run, health=self.health)
        self._restarts = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._job.running:
            raise RuntimeError("devices controller already started")
        self._sync.register_initializer()
        self.health.starting("listing links, addresses and routes")
        self._job.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._job.stop(timeout)

    def wait_initialized(self, timeout: float | None) -> bool:
        """Block until the first full listing is committed (True) or the timeout passes."""
        return self._db.wait_initialized(DEVICES, timeout)

    # -- observation ----------------------------------------------------------------------------

    @property
    def restarts(self) -> int:
        """How many times the subscription was rebuilt after an error."""
        return self._restarts

    def selected_devices(self) -> list[Device]:
        """Selected rows as last committed, in ifindex order."""
        return [r for _i, r in sorted(self._sync.rows.items()) if r.selected]

    def _ok(self) -> None:
        rows = self._sync.rows
        selected = self._sync.selected_names()
        names = f" ({' '.join(selected)})" if selected else ""
        self.health.ok(f"{len(rows)} devices, {len(selected)} selected{names}")
        self._job.succeeded()  # clears a failure the job's guard caught, if any

    # -- the job --------------------------------------------------------------------------------

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            source: NetlinkSource | None = None
            try:
                source = self._source_factory()
                source.open()
                self._sync.full_sync(source.dump(), self._clock.monotonic())
                self._ok()
                self._follow(source, stopping)
            except NetlinkError as e:
                self._failed(f"netlink error: {e}", stopping)
            except Exception as e:
                # A bug or a database error must not end the controller silently.
                log.exception("devices controller failed")
                self._failed(f"{type(e).__name__}: {e}", stopping)
            finally:
                if source is not None:
                    try:
                        source.close()
                    except Exception:
                        log.exception("closing the netlink source failed")
            if not stopping.is_set():
                stopping.wait(self._config.restart_delay)

    def _failed(self, what: str, stopping: threading.Event) -> None:
        if stopping.is_set():
            return
        self._restarts += 1
        log.warning("%s; relisting in %gs", what, self._config.restart_delay)
        self.health.degraded(f"{what}; relisting in {self._config.restart_delay:g}s")

    def _follow(self, source: NetlinkSource, stopping: threading.Event) -> None:
        """Receive changes and write them in batches until stopped (or an error is raised)."""
        cfg = self._config
        clock = self._clock
        pending: list[Update] = []
        deadline: float | None = None
        while not stopping.is_set():
            wait = cfg.poll_interval
            if deadline is not None:
                # A fake clock says "until woken" (None): keep polling at the usual pace, the
                # batch goes out once the test has moved its time past the deadline.
                left = clock.real_timeout(deadline - clock.monotonic())
                wait = min(wait, left) if left is not None else wait
            updates = source.receive(wait)
            if updates:
                if deadline is None:
                    deadline = clock.monotonic() + cfg.batch_interval
                pending.extend(updates)
            if deadline is not None and clock.monotonic() >= deadline:
                batch, pending, deadline = pending, [], None
                if self._sync.apply_batch(batch, clock.monotonic()):
                    self._ok()


__all__ = ["DevicesController", "DevicesControllerConfig"]
