"""The node agent: every module wired explicitly, started in dependency order, stopped in reverse.

    config -> state database (config, health tables)
    netlink -> devices controller -> devices
    Kubernetes -> reflectors -> services, nodes, policies, leases, pods
    l2-announcer (+ elector, policy status writer) -> l2-announce
    l2-responder reconciler -> BPF map (+ gratuitous ARP), liveness stamping
    lease GC every minute; health published every second

Shutdown (SIGTERM) is ordered so a planned handover never has two nodes answering and finishes
within 2 s: withdraw every entry, let the responder remove the keys, then release the leases
(followers take them over as soon as they see the release), then stop the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import Config
from agent.metrics import Metrics
from agent.modules import HealthPublisher, Periodic, PodAnnouncer, write_config
from agent.service_status import ServiceStatusWriter, kubernetes_writers
from common.leases import lease_name

if TYPE_CHECKING:
    from agent.announcer.controller import Announcer
    from common.tables.l2_announce import Origin

log = logging.getLogger("l2announcer.agent")

DB_FILE = "statedb.sqlite"


def _attribute(obj: Any, name: str) -> Callable[[], str]:
    return lambda: str(getattr(obj, name))


class Agent:
    def __init__(
        self,
        config: Config,
        sources: Mapping[str, str],
        *,
        datapath: bool = True,
        api_client: Any = None,
    ) -> None:
        self.config = config
        self.sources = sources
        self.use_datapath = datapath
        self.api_client = api_client
        self._stops: list[tuple[str, Any]] = []  # (module, stop callable), in start order
        self.announcer: Announcer | None = None
        self._handed_over = False
        self.stopped = threading.Event()

    # -- start --------------------------------------------------------------------------------

    def start(self) -> None:
        from common.tables import CATALOGUE
        from statedb import Database

        c = self.config
        self.db = Database.open(Path(c.state_dir) / DB_FILE, CATALOGUE.values())
        self._stops.append(("database", self.db.close))
        write_config(self.db, c, self.sources)
        self.health = HealthPublisher(self.db)

        self.metrics: Metrics | None = None
        if c.prometheus_serve_addr:
            self.metrics = Metrics()
            self.metrics.watch_state(self.db)
        self._start_devices()
        if self.api_client is None:
            from agent.k8s.client import make_api_client

            self.api_client = make_api_client(
                c.kubeconfig, c.effective_qps, c.effective_burst, observer=self.metrics
            )

        from agent.k8s.leases import KubernetesLeaseAPI

        self.lease_api = KubernetesLeaseAPI(self.api_client, c.k8s_namespace)
        if c.enable_l2_announcements:
            self._start_announcements()
        else:
            # As the reference: one lease GC at start-up, then nothing (the feature is off).
            self._gc_once()
            if self.use_datapath:
                self._disable_datapath()
        if c.enable_l2_pod_announcements:
            self._start_pod_announcements()
        if self.metrics is not None:
            port = self.metrics.serve(c.prometheus_serve_addr)
            self._stops.append(("metrics", self.metrics.stop))
            log.info("serving Prometheus metrics on %s (port %d)", c.prometheus_serve_addr, port)
        self.health.start()
        self._stops.append(("health", self.health.stop))
        self.health.publish()
        log.info(
            "l2announcer agent started on node %s (l2 announcements %s)",
            c.node_name,
            "enabled" if c.enable_l2_announcements else "disabled",
        )

    def _start_devices(self) -> None:
        from agent.devices import DevicesController, DevicesOptions

        c = self.config
        self.devices = DevicesController(
            self.db, DevicesOptions(c.devices, c.force_device_detection)
        )
        self.devices.start()
        self._stops.append(("devices", self.devices.stop))
        self.health.add("devices", self.devices.health)

    def _reflect(self, names: list[str]) -> None:
        from agent.k8s.objects import MAPPINGS, sources
        from agent.k8s.reflector import Reflector

        c = self.config
        all_sources = sources(self.api_client, c.node_name, c.k8s_namespace)
        for name in names:
            r: Reflector[Any] = Reflector(self.db, all_sources[name], MAPPINGS[name])
            r.start()
            self._stops.append((r.name, r.stop))
            self.health.add(r.name, _attribute(r, "health"))

    def _start_announcements(self) -> None:
        from agent.announcer.announced import AnnouncedServices
        from agent.announcer.controller import Announcer
        from agent.announcer.status_writer import StatusWriter, kubernetes_patch
        from agent.k8s.client import lease_workers
        from agent.leases.elector import Elector
        from agent.leases.state import Timings

        c = self.config
        self._reflect(["services", "nodes", "policies", "leases"])
        timings = Timings(
            c.l2_announcements_lease_duration,
            c.l2_announcements_renew_deadline,
            c.l2_announcements_retry_period,
        )
        self.status_writer = StatusWriter(kubernetes_patch(self.api_client))
        self.status_writer.start()
        self._stops.append(("policy-status", self.status_writer.stop))

        annotate, record_event = kubernetes_writers(self.api_client, c.node_name)
        self.service_status = ServiceStatusWriter(c.node_name, annotate, record_event)
        self.service_status.start()
        self._stops.append(("service-status", self.service_status.stop))

        def on_change(lease: str, leading: bool, reason: str) -> None:
            if self.announcer is not None:
                self.announcer.on_leadership(lease, leading, reason)
            if self.metrics is not None:
                self.metrics.on_leadership(lease, leading, reason)

        def on_announced(service: Origin, pairs: list[tuple[str, str]]) -> None:
            # Reported only once a pair is programmed: a held lease alone announces nothing.
            where = ", ".join(f"{ip} on {iface}" for ip, iface in pairs)
            lease = lease_name(service.namespace, service.name)
            self.service_status.announced(
                service.namespace, service.name, detail=f"{where}; lease {lease}"
            )

        self.elector = Elector(
            self.lease_api,
            c.node_name,
            timings,
            on_change,
            namespace=c.k8s_namespace,
            on_takeover=self.metrics.on_takeover if self.metrics is not None else None,
            client_qps=c.effective_qps,
            workers=lease_workers(c.effective_qps),
        )
        self.announcer = Announcer(
            self.db,
            self.elector,
            c.node_name,
            self.status_writer.submit,
            settle_timeout=c.l2_announcements_renew_deadline,
            external_ips=c.enable_external_ips,
            on_other_holder=self.service_status.other_holder,
        )
        if self.use_datapath:
            self._start_datapath()
        if self.metrics is not None:
            self.metrics.attach(
                responder_items=self._responder_items if self.use_datapath else None,
                campaigns=self.elector.campaigns,
            )
        self.announced = AnnouncedServices(self.db, on_announced, reconciled=self.use_datapath)
        self.announced.start()
        self._stops.append(("announced-services", self.announced.stop))
        self.elector.start()
        self.announcer.start()
        # Stopped together, in the safe order (see the module docstring).
        self._stops.append(("l2-announcer", self._stop_announcing))
        self.health.add("l2-announcer", lambda: self.announcer.health if self.announcer else "")
        self.health.add("elector", self._elector_health)
        gc = Periodic("lease-gc", 60.0, self.lease_api.collect_garbage, first=60.0)
        gc.start()
        self._stops.append(("lease-gc", gc.stop))
        self.health.add("lease-gc", gc.health)

    def _elector_health(self) -> str:
        campaigns = self.elector.campaigns()
        leading = sum(1 for s in campaigns.values() if s == "leading")
        errors = sorted({s for s in campaigns.values() if s.startswith("error")})
        summary = f"leading {leading} of {len(campaigns)} lease(s)"
        problems = [p for p in (self.elector.churn_problem(), *errors[:1]) if p]
        return f"Degraded: {summary}; {'; '.join(problems)}" if problems else f"OK, {summary}"

    def _start_datapath(self) -> None:
        from agent.responder.device_sync import DeviceSync
        from agent.responder.ops import ResponderOps
        from agent.runtime.clock import RealClock
        from bpf.datapath import Datapath
        from bpf.garp import GarpSender
        from common.tables.l2_announce import L2_ANNOUNCE
        from statedb.reconciler import Config as ReconcilerConfig
        from statedb.reconciler import Reconciler

        c = self.config
        self.datapath = Datapath(
            c.bpf_root,
            int(c.l2_announcements_renew_deadline * 1e9),
            stamp_interval_s=c.agent_liveness_update_interval,
        )
        self.datapath.start()
        metrics = self.metrics

        def garp_sent(vip: str, _ifindex: int, ifname: str) -> None:
            if metrics is not None:
                metrics.on_garp(vip, ifname)

        self.garp = GarpSender(
            c.l2_announcements_garp_count,
            c.l2_announcements_garp_interval,
            on_sent=garp_sent if metrics is not None else None,
        )
        self.garp.start()
        ops = ResponderOps(self.db, self.datapath.responder, self.datapath, self.garp)
        # The reference's full reconciliation ran every 5 minutes; prune as often.
        self.responder = Reconciler(
            self.db,
            L2_ANNOUNCE,
            ops,
            ReconcilerConfig(prune_interval=300.0),
            clock=RealClock(),
            name="l2-responder",
        )
        self.responder.start()
        self.device_sync = DeviceSync(self.db, ops, self.responder)
        self.device_sync.start()
        self.health.add("l2-responder", self.responder.health)
        self.health.add("datapath", self._datapath_health)

        def stamp_after_first_prune() -> None:
            # Only vouch for the map once stale keys are gone (bpf/datapath.py explains).
            while not self.stopped.is_set():
                if self.responder.wait_for_prunes(1, timeout=0.5):
                    self.datapath.start_stamping()
                    log.info("l2-responder map reconciled; datapath liveness stamping started")
                    return

        threading.Thread(target=stamp_after_first_prune, name="stamp-gate", daemon=True).start()

    def _responder_items(self) -> list[tuple[str, int, int]]:
        return [(e.ip, e.ifindex, e.responses_sent) for e in self.datapath.responder.items()]

    def _datapath_health(self) -> str:
        if not self.datapath.stamper.running:
            return "Starting: waiting for the first full reconciliation before stamping liveness"
        return f"OK, attached to {len(self.datapath.attached())} interface(s)"

    def _disable_datapath(self) -> None:
        """The feature is off: remove a program and pins a previous agent left behind."""
        from bpf.datapath import Datapath

        if not Path(self.config.bpf_root, "cilium_l2_responder_v4").exists():
            return
        try:
            dp = Datapath(self.config.bpf_root)
            dp.start()
            dp.shutdown(detach=True)
            log.info("l2 announcements disabled: detached the responder and removed its pins")
        except Exception as e:
            log.warning("l2 announcements disabled, but cleaning up the datapath failed: %s", e)

    def _gc_once(self) -> None:
        try:
            self.lease_api.collect_garbage()
        except Exception as e:
            log.warning("lease GC failed: %s", e)

    def _start_pod_announcements(self) -> None:
        from bpf.garp import GarpSender

        c = self.config
        self._reflect(["pods"])
        sender = getattr(self, "garp", None) or GarpSender(
            c.l2_announcements_garp_count, c.l2_announcements_garp_interval
        )
        sender.start()
        pods = PodAnnouncer(self.db, c.l2_pod_announcements_interface, sender.announce)
        pods.start()
        self._stops.append(("pod-announcer", pods.stop))

    # -- stop ---------------------------------------------------------------------------------

    def _hand_over(self) -> None:
        """Withdraw every entry, let the responder remove the keys, then release the leases;
        followers take each lease as soon as they see its release. Once only."""
        if self.announcer is None or self._handed_over:
            return
        self._handed_over = True
        self.announcer.stop()  # withdraws every entry
        if self.use_datapath:
            self.responder.wait_until_reconciled(0.5, allow_errors=True)
        self.elector.stop(release_timeout=0.8)  # then release the leases

    def _stop_announcing(self) -> None:
        self._hand_over()  # done already when stop() runs: there it goes first
        if self.use_datapath:
            self.device_sync.stop()
            self.responder.stop(timeout=1.0)
            self.garp.stop()  # closes its sockets too
            self.datapath.shutdown(detach=False)  # the next agent adopts the program and pins

    def stop(self) -> None:
        """Hand the leases over, then stop every module in reverse start order; never raises.

        The handover goes first because every module stopped before it delays the followers:
        the metrics server alone takes up to half a second to stop (its serve loop polls)."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        started = time.monotonic()
        stops = list(reversed(self._stops))
        if self.announcer is not None:
            stops.insert(0, ("handover", self._hand_over))
        for name, stop in stops:
            t0 = time.monotonic()
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed", name)
            if time.monotonic() - t0 > 0.3:
                log.info("stopping %s took %.2fs", name, time.monotonic() - t0)
        log.info("l2announcer agent stopped in %.2fs", time.monotonic() - started)
