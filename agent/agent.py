"""The node agent: every module built and wired here, in ``Agent.__init__``, and appended to one
``Lifecycle`` in dependency order; ``start()`` starts them in that order, ``stop()`` stops them in
reverse. Every module's health reporter is registered in one ``HealthRegistry``, which the health
publisher copies into the ``health`` table every second.

    health-server   /healthz and /readyz for the kubelet's probes; first, so that a slow start
                    (the datapath compiling) answers "not yet" instead of refusing connections
    database        config table written at start
    devices         netlink -> devices
    lease-api       the elector's Kubernetes client (shares the agent's rate limiter)
    reflectors      Kubernetes -> services, nodes, policies, leases, endpointslices
    policy-status   policy conditions -> CiliumL2AnnouncementPolicy status
    service-status  "announcing <ip> on <iface> from node X" -> an Event on the Service
    announced-services  l2-announce rows programmed -> service-status
    datapath        BPF program and pinned maps; its liveness job stamps once the map is pruned
    garp-sender     the later packets of gratuitous ARP bursts
    l2-responder    reconciler: l2-announce -> BPF map (+ gratuitous ARP)
    device-sync     devices -> l2-responder (re-reconcile on a changed MAC or ifindex)
    conflict-reports, conflicts   ARP on the announcing interfaces -> conflicts table, a Warning
                    Event and the Conflict condition on the Service (another host has our VIP)
    node-liveness   the nodes' heartbeat leases -> l2-nodes (alive, expired, released)
    elector         leases wanted -> leases held, and this node's heartbeat lease renewed
    l2-announcer    services, policies, devices, leases held -> l2-announce
    lease-gc        deletes our released leases (as the leases table shows them) every minute
    reflector:pods, pod-announcer   pods -> gratuitous ARP (L2 pod announcements)
    metrics         Prometheus
    health          health registry -> health table, and the heartbeat

Shutdown (SIGTERM) is ordered so a planned handover never has two nodes answering and finishes
within 2 s: withdraw every entry, let the responder remove the keys, then release the leases
(followers take them over as soon as they see the release), then stop the rest in reverse. When
the agent's DaemonSet (env DAEMONSET_NAME) is gone or being deleted, the stop is an uninstall:
the node's tc filters, pins and state files are removed last (agent/cleanup.py).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.api_usage import ApiUsage
from agent.config import Config
from agent.config_table import write_config
from agent.health_publisher import HealthPublisher
from agent.health_server import HealthServer
from agent.k8s.uninstall import DAEMONSET_ENV
from agent.metrics import Metrics, MetricsServer
from agent.runtime import (
    Clock,
    Health,
    HealthRegistry,
    HealthReporter,
    Job,
    Lifecycle,
    RealClock,
    Timer,
)
from common.leases import heartbeat_name, lease_name
from common.tables import CATALOGUE
from statedb import Database

if TYPE_CHECKING:
    from agent.announcer.controller import L2Announcer
    from agent.announcer.gates import Gate
    from agent.announcer.placement_gate import PlacementGate
    from agent.leases.elector import Elector
    from agent.leases.heartbeat import NodeLivenessMonitor
    from agent.service_conditions import ServiceConditions
    from bpf.datapath import Datapath
    from bpf.garp import GarpSender
    from common.tables.contest import ContestEntry
    from common.tables.l2_announce import L2AnnounceEntry, Origin
    from statedb.reconciler import Reconciler

log = logging.getLogger("l2announcer.agent")

DB_FILE = "statedb.sqlite"

# The agent's own durations, in seconds, each with its reason. Everything a user may tune is a
# configuration key (agent/config.py); these are not, because they follow from the design.

HEALTH_PUBLISH_INTERVAL = 1.0
"""How often the health table is refreshed: ``l2dbg status`` and the readiness probe see a change
within a second, and the heartbeat row it rewrites is what the liveness probe checks."""

LEASE_GC_INTERVAL = 60.0
"""Between two deletions of our unheld leases (released on shutdown, or of de-selected Services);
the first runs one interval after start. Leftover leases cost only a list entry, so once a minute
is plenty and keeps the API traffic negligible."""

RESPONDER_PRUNE_INTERVAL = 300.0
"""Between two prunes of the BPF map (removing keys no row describes). The map has one writer,
this agent, so a prune only catches keys written behind its back; every five minutes bounds how
long such a key can answer."""

HANDOVER_RECONCILE_TIMEOUT = 0.5
"""At shutdown, how long the responder may take to delete the withdrawn keys before the leases
are released anyway: long enough for thousands of map deletes, short enough to keep the handover
within the pod's 2 s budget."""

HANDOVER_RELEASE_TIMEOUT = 0.8
"""At shutdown, how long the elector may take to release the leases it holds: followers take a
lease over as soon as they see its release, instead of after its duration expires."""

UNINSTALL_CHECK_TIMEOUT = 5.0
"""At shutdown, after the handover (so followers never wait for it), how long the GET of the
agent's DaemonSet may take; past it the stop counts as a restart (the datapath is kept, as for
one). Well inside the pod's termination grace period, and generous for a busy API server."""

RESPONDER_STOP_TIMEOUT = 1.0
"""How long stopping waits for the responder's loop to finish an operation in progress (a BPF
syscall or a gratuitous ARP send)."""


def _reconciler_health(rec: Reconciler[L2AnnounceEntry]) -> Health:
    h = rec.health()
    return Health.ok(h.message) if h.ok else Health.degraded(h.message)


class Module(Protocol):
    """What the agent wires: a named thing that starts, stops and reports its health."""

    name: str
    health: HealthReporter

    def start(self) -> None: ...

    def stop(self) -> object: ...


class _ResponderMapOf:
    """The datapath's responder map, looked up at each call: the datapath opens its maps when it
    starts, after every module has been built."""

    def __init__(self, datapath: Datapath) -> None:
        self._datapath = datapath

    def add_if_missing(self, ip: str, ifindex: int) -> bool:
        return self._datapath.responder.add_if_missing(ip, ifindex)

    def delete(self, ip: str, ifindex: int) -> bool:
        return self._datapath.responder.delete(ip, ifindex)

    def keys(self) -> list[tuple[str, int]]:
        return self._datapath.responder.keys()


class Agent:
    def __init__(
        self,
        config: Config,
        sources: Mapping[str, str],
        *,
        datapath: bool = True,
        api_client: Any = None,
        clock: Clock | None = None,
    ) -> None:
        """Build every module; nothing runs until ``start()``. Raises on bad local configuration
        (no kubeconfig, an unknown pod announcement interface), with nothing left open."""
        self.config = config
        self.sources = sources
        self.use_datapath = datapath
        self.clock: Clock = clock or RealClock()
        self.lifecycle = Lifecycle()
        self.health = HealthRegistry()
        self.stopped = threading.Event()
        self._handed_over = False
        self._announcer_started = False
        # Named by the manifest: a stop while it is gone or being deleted is an uninstall.
        self._daemonset = os.environ.get(DAEMONSET_ENV, "")

        # Built only when their feature is on (None otherwise).
        self.metrics: Metrics | None = None
        self.elector: Elector | None = None
        self.node_liveness: NodeLivenessMonitor | None = None
        self.placement: PlacementGate | None = None
        self.announcer: L2Announcer | None = None
        self.service_conditions: ServiceConditions | None = None
        self.datapath: Datapath | None = None
        self.garp: GarpSender | None = None
        self.responder: Reconciler[L2AnnounceEntry] | None = None

        self.db = Database.open(Path(config.state_dir) / DB_FILE, CATALOGUE.values())
        try:
            self._build(api_client)
        except BaseException:
            self.db.close()
            raise

    # -- building -------------------------------------------------------------------------------

    def _build(self, api_client: Any) -> None:
        from agent.devices import DevicesController, DevicesOptions
        from agent.k8s.leases import KubernetesLeaseAPI

        c = self.config
        # Built first, appended last: the publisher starts once every module has (its first
        # publication is what makes the agent live), while the probes' server, which answers
        # from that publication, listens from the start.
        self.publisher = HealthPublisher(
            self.db, self.health, interval=HEALTH_PUBLISH_INTERVAL, clock=self.clock
        )
        publisher = self.publisher
        self.health_server = HealthServer(
            c.agent_health_port, lambda: publisher.last, clock=self.clock
        )
        self._add(self.health_server)
        self.lifecycle.append(
            "database", start=lambda: write_config(self.db, c, self.sources), stop=self.db.close
        )
        if c.prometheus_serve_addr:
            self.metrics = Metrics()
            self.metrics.watch_state(self.db)

        self.devices = DevicesController(
            self.db, DevicesOptions(c.devices, c.force_device_detection), clock=self.clock
        )
        self._add(self.devices)

        # Counts every request (then the metrics do): l2dbg status shows the rate and the limit
        # the leases need.
        self.api_usage = ApiUsage(
            c.effective_qps,
            c.effective_burst,
            c.l2_announcements_renew_deadline,
            forward=self.metrics,
            clock=self.clock,
            economy=c.l2_announcements_lease_mode == "economy",
        )
        self.health.add(self.api_usage.health)
        if api_client is None:
            from agent.k8s.client import make_api_client

            api_client = make_api_client(
                c.kubeconfig, c.effective_qps, c.effective_burst, observer=self.api_usage
            )
        self.api_client = api_client
        self.lease_api = KubernetesLeaseAPI(
            api_client, c.k8s_namespace, monotonic=self.clock.monotonic
        )
        self.lifecycle.append("lease-api", stop=self.lease_api.close)

        if c.enable_l2_announcements:
            self._build_announcements()
        else:
            # The feature is off: one lease GC at start-up, then nothing; and remove a datapath a
            # previous agent left behind.
            self.lifecycle.append("lease-gc", start=self._collect_garbage_once)
            if self.use_datapath:
                self.lifecycle.append("datapath", start=self._disable_datapath)
        if c.enable_l2_pod_announcements:
            self._build_pod_announcements()
        if self.metrics is not None:
            # Its own job: a taken port is a Degraded row and retries, not a failed start.
            self._add(MetricsServer(self.metrics, c.prometheus_serve_addr))
        self.lifecycle.append_job(self.publisher)

    def _add(self, module: Module, stop: Callable[[], object] | None = None) -> None:
        """Its health reporter registered, its start and stop (or ``stop``) appended."""
        self.health.add(module.health)
        self.lifecycle.append(module.name, module.start, stop or module.stop)

    def _reflectors(self, names: list[str]) -> None:
        from agent.k8s.objects import MAPPINGS, sources
        from agent.k8s.reflector import Reflector

        c = self.config
        all_sources = sources(
            self.api_client, c.node_name, c.k8s_namespace, all_nodes=c.l2_announcements_balance
        )
        for name in names:
            r: Reflector[Any] = Reflector(
                self.db, all_sources[name], MAPPINGS[name], clock=self.clock
            )
            self._add(r)

    def _placement(self, elector: Elector) -> list[Gate]:
        """The placement gate, last (l2-announcements-balance): a release for balance is paced
        at one per retry period, and a lease free for a retry period is anyone's."""
        from agent.announcer.placement_gate import PlacementGate

        c = self.config
        if not c.l2_announcements_balance:
            return []
        self.placement = PlacementGate(
            pace=c.l2_announcements_retry_period,
            grace=c.l2_announcements_retry_period,
            rebalance=c.l2_announcements_rebalance,
            external_ips=c.enable_external_ips,
            clock=self.clock,
            leading=elector.is_leading,
        )
        return [self.placement]

    def _build_announcements(self) -> None:
        from agent.announcer.announced import AnnouncedServices
        from agent.announcer.controller import L2Announcer
        from agent.announcer.gates import default_gates
        from agent.announcer.policy_status_writer import PolicyStatusWriter
        from agent.k8s.client import lease_workers
        from agent.k8s.policy_status import kubernetes_patch
        from agent.k8s.service_conditions import kubernetes_condition_writer
        from agent.k8s.service_status import kubernetes_writers
        from agent.leases.election import Timings
        from agent.leases.elector import Elector
        from agent.leases.heartbeat import NodeLivenessMonitor
        from agent.service_conditions import ServiceConditions, announced_condition
        from agent.service_status import ServiceStatusWriter

        c = self.config
        metrics = self.metrics
        economy = c.l2_announcements_lease_mode == "economy"
        # EndpointSlices always, not only while some Service is Local: a watch started on demand
        # would leave the first Local Service's gate without data (docs/deploy.md, RBAC).
        self._reflectors(["services", "nodes", "policies", "leases", "endpointslices"])
        self._add_link_fence()

        status_writer = PolicyStatusWriter(kubernetes_patch(self.api_client))
        self._add(status_writer)
        look_up, record_event = kubernetes_writers(self.api_client, c.node_name)
        service_status = ServiceStatusWriter(c.node_name, look_up, record_event)
        self._add(service_status)
        conditions = ServiceConditions(kubernetes_condition_writer(self.api_client))
        self._add(conditions)
        self.service_conditions = conditions

        def on_contest(old: ContestEntry | None, new: ContestEntry, cluster_wide: bool) -> None:
            cond = announced_condition(c.node_name, old, new, cluster_wide)
            if cond is not None:
                conditions.set(
                    new.namespace, new.name, cond.type, cond.status, cond.reason, cond.message
                )

        def on_announced(service: Origin, pairs: list[tuple[str, str]]) -> None:
            # Reported only once a pair is programmed: a held lease alone announces nothing.
            lease = f"{c.k8s_namespace}/{lease_name(service.namespace, service.name)}"
            service_status.announced(service.namespace, service.name, pairs, lease)

        # Started before the datapath so that it stops after it, as the handover expects.
        announced = AnnouncedServices(
            self.db, on_announced, reconciled=self.use_datapath, clock=self.clock
        )
        self._add(announced)

        def on_change(lease: str, leading: bool, reason: str) -> None:
            if self.announcer is not None:
                self.announcer.on_leadership(lease, leading, reason)
            if metrics is not None:
                metrics.on_leadership(lease, leading, reason)

        elector = Elector(
            self.lease_api,
            c.node_name,
            Timings(
                c.l2_announcements_lease_duration,
                c.l2_announcements_renew_deadline,
                c.l2_announcements_retry_period,
            ),
            on_change,
            clock=self.clock,
            namespace=c.k8s_namespace,
            on_takeover=metrics.on_takeover if metrics is not None else None,
            client_qps=c.effective_qps,
            workers=lease_workers(c.effective_qps),
            # Only for what reads it (economy mode, placement): in the seed's mode alone a heartbeat
            # would only add requests (with placement, per-service mode renews it at a third of
            # the lease duration, heartbeat.placement_heartbeat_timings).
            heartbeat=heartbeat_name(c.node_name) if economy or c.l2_announcements_balance else "",
            economy=economy,
        )
        self.elector = elector
        node_liveness = NodeLivenessMonitor(self.db, clock=self.clock)
        self.node_liveness = node_liveness
        self.announcer = L2Announcer(
            self.db,
            elector,
            c.node_name,
            status_writer.submit,
            settle_timeout=c.l2_announcements_renew_deadline,
            external_ips=c.enable_external_ips,
            on_other_holder=service_status.other_holder,
            clock=self.clock,
            gates=default_gates(
                endpoints=True, announce_without_endpoints=c.announce_without_endpoints, fence=True
            )
            + self._placement(elector),
            on_contest=on_contest,
            before_release=self._await_withdrawal,
        )
        if self.use_datapath:
            self._build_datapath()
        if metrics is not None:
            metrics.attach(
                responder_items=self._responder_items if self.use_datapath else None,
                campaigns=elector.campaigns,
            )
        self._add(node_liveness)
        # Both stop through the handover, which runs once (see stop()).
        self.health.add(elector.health)
        self.lifecycle.append(elector.name, elector.start, self._hand_over)
        announcer = self.announcer
        self.api_usage.leases = lambda: max(len(elector.campaigns()), announcer.selected_leases)
        self.health.add(self.announcer.health)
        self.lifecycle.append(self.announcer.name, self._start_announcer, self._hand_over)

        gc = Timer(
            "lease-gc",
            LEASE_GC_INTERVAL,
            self._collect_released_leases,
            first=LEASE_GC_INTERVAL,
        )
        self._add(gc)

    def _build_datapath(self) -> None:
        from agent.responder.device_sync import DeviceSync
        from agent.responder.ops import ResponderOps
        from agent.responder.verifier import DatapathVerifier
        from bpf import attach as tc
        from bpf.datapath import Datapath
        from bpf.mcast import SolicitedNodeGroups
        from common.tables.l2_announce import L2_ANNOUNCE
        from statedb.reconciler import Config as ReconcilerConfig
        from statedb.reconciler import Reconciler

        c = self.config
        datapath = Datapath(
            c.bpf_root,
            int(c.l2_announcements_renew_deadline * 1e9),
            stamp_interval_s=c.agent_liveness_update_interval,
            liveness_gate=self._economy_gate(),
        )
        self.datapath = datapath
        # Compiles and loads the program (slow, seconds); the next agent adopts what it leaves.
        self.lifecycle.append(
            "datapath", start=datapath.start, stop=lambda: datapath.shutdown(detach=False)
        )
        liveness = Job(
            "datapath-liveness",
            self._stamp_liveness,
            wake=lambda: self.responder.wake() if self.responder is not None else None,
            health=HealthReporter("datapath", probe=self._datapath_health),
        )
        self._add(liveness)

        garp = self._garp_sender()
        # The IPv6 VIPs' solicited-node groups, joined while held; closing leaves them all.
        groups = SolicitedNodeGroups()
        self.lifecycle.append("solicited-node-groups", stop=groups.close)
        ops = ResponderOps(self.db, _ResponderMapOf(datapath), datapath, garp, groups)
        responder: Reconciler[L2AnnounceEntry] = Reconciler(
            self.db,
            L2_ANNOUNCE,
            ops,
            ReconcilerConfig(prune_interval=RESPONDER_PRUNE_INTERVAL),
            clock=self.clock,
            name="l2-responder",
        )
        self.responder = responder
        job = Job(
            responder.name,
            responder.run,
            wake=responder.wake,
            health=HealthReporter(responder.name, probe=lambda: _reconciler_health(responder)),
        )
        self._add(job, stop=lambda: job.stop(RESPONDER_STOP_TIMEOUT))
        self._add(DeviceSync(self.db, ops, responder, clock=self.clock))
        self._add(DatapathVerifier(self.db, ops, tc.attached_among, clock=self.clock))
        if c.l2_announcements_conflict_detection:
            self._build_conflicts()

    def _economy_gate(self) -> Callable[[], bool] | None:
        """In lease economy mode the datapath is stamped only while this node's heartbeat was
        renewed recently enough that its answers stop before any other node may take one of its
        Services over (agent/leases/heartbeat.py, stamp_window); a stuck elector thus silences
        the datapath too. In per-service mode the stamp is not gated."""
        from agent.leases.election import Timings
        from agent.leases.heartbeat import stamp_window

        c = self.config
        elector = self.elector
        if elector is None or not elector.economy:
            return None
        window = stamp_window(
            Timings(
                c.l2_announcements_lease_duration,
                c.l2_announcements_renew_deadline,
                c.l2_announcements_retry_period,
            )
        )
        return lambda: elector.heartbeat_fresh(window)

    def _add_link_fence(self) -> None:
        """The fence gate's links: interfaces down or without carrier, in ``l2-fence``."""
        from agent.devices import DevicesOptions
        from agent.fence.links import LinkFences, LinkFenceWatcher

        c = self.config
        fences = LinkFences(DevicesOptions(c.devices, c.force_device_detection))
        self._add(LinkFenceWatcher(self.db, fences, clock=self.clock))

    def _build_conflicts(self) -> None:
        """Another host answering for a VIP we announce: watched on the announcing interfaces
        (agent/conflicts/); told to the Service by a Warning Event and its Conflict condition."""
        from agent.conflicts import ConflictMonitor, ConflictReports, Settings
        from agent.conflicts.report import services_table
        from agent.k8s.service_status import kubernetes_writers

        c = self.config
        metrics = self.metrics
        look_up, warning = kubernetes_writers(self.api_client, c.node_name, "Warning")
        _, normal = kubernetes_writers(self.api_client, c.node_name)
        conditions = getattr(self, "service_conditions", None)  # the one condition writer
        reports = ConflictReports(
            c.node_name,
            look_up,
            warning,
            normal,
            set_condition=conditions.set if conditions is not None else None,
            service_row=services_table(self.db),
        )
        self._add(reports)
        monitor = ConflictMonitor(
            self.db,
            c.node_name,
            Settings(probe_interval=c.l2_announcements_conflict_probe_interval),
            reports=reports,
            on_packet=metrics.on_conflict_packet if metrics is not None else None,
            on_defence=metrics.on_conflict_defence if metrics is not None else None,
            clock=self.clock,
        )
        self.health.add(monitor.tables_health)
        self._add(monitor)

    def _garp_sender(self) -> GarpSender:
        """The one gratuitous ARP sender (the responder's and the pod announcer's), built and
        appended to the lifecycle where it is first needed."""
        from bpf.garp import GarpSender

        if self.garp is not None:
            return self.garp
        c = self.config
        metrics = self.metrics

        def garp_sent(vip: str, _ifindex: int, ifname: str) -> None:
            if metrics is not None:
                metrics.on_garp(vip, ifname)

        garp = GarpSender(
            c.l2_announcements_garp_count,
            c.l2_announcements_garp_interval,
            # Counted for the responder's bursts (and the pods' when both are on).
            on_sent=garp_sent if metrics is not None and self.use_datapath else None,
            clock=self.clock.monotonic,
        )
        self.garp = garp
        job = Job(
            "garp-sender",
            garp.run,
            wake=garp.wake,
            health=HealthReporter(
                "garp-sender", probe=lambda: Health.ok(f"{garp.sent} packet(s) sent")
            ),
        )

        def stop() -> None:
            job.stop()
            garp.close()  # drops what is pending, closes its sockets

        self._add(job, stop=stop)
        return garp

    def _build_pod_announcements(self) -> None:
        from agent.pod_announcer import PodAnnouncer

        c = self.config
        self._reflectors(["pods"])
        garp = self._garp_sender()
        self._add(
            PodAnnouncer(self.db, c.l2_pod_announcements_interface, garp.announce, clock=self.clock)
        )

    # -- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start every module in order; if one fails, what started is stopped and StartError
        names the module."""
        self.lifecycle.start()
        log.info(
            "l2announcer agent started on node %s (l2 announcements %s)",
            self.config.node_name,
            "enabled" if self.config.enable_l2_announcements else "disabled",
        )

    def _start_announcer(self) -> None:
        assert self.announcer is not None
        self.announcer.start()
        self._announcer_started = True

    def _stamp_liveness(self, stopping: threading.Event) -> None:
        """Vouch for the map only once the responder has pruned it: until then it may hold keys
        of a previous agent for leases that have moved (bpf/datapath.py explains). Then keep the
        stamp fresh until stopped."""
        assert self.responder is not None and self.datapath is not None
        if not self.responder.wait_for_prunes(1, None, until=stopping.is_set):
            return
        self.datapath.vouch()
        log.info("l2-responder map reconciled; datapath liveness stamping started")
        self.datapath.stamper.run(stopping)

    def _datapath_health(self) -> Health:
        from bpf.datapath import DatapathNotStarted

        assert self.datapath is not None
        try:
            stamper = self.datapath.stamper
        except DatapathNotStarted:
            return Health.starting("loading the program")
        if not stamper.running:
            return Health.starting(
                "waiting for the first full reconciliation before stamping liveness"
            )
        if stamper.last_error is not None:
            return Health.degraded(f"liveness stamp failed: {stamper.last_error}")
        return Health.ok(f"attached to {len(self.datapath.attached())} interface(s)")

    def _responder_items(self) -> list[tuple[str, int, int]]:
        assert self.datapath is not None
        return [(e.ip, e.ifindex, e.responses_sent) for e in self.datapath.responder.items()]

    def _disable_datapath(self) -> None:
        """The feature is off: remove the filters and pins a previous agent left behind, and only
        those (a pin at our path that is not ours, e.g. Cilium's, is left with one log line)."""
        from bpf.datapath import remove_leftovers

        try:
            removed = remove_leftovers(self.config.bpf_root)
        except Exception as e:
            log.warning("l2 announcements disabled, but cleaning up the datapath failed: %s", e)
            return
        if removed:
            log.info("l2 announcements disabled: removed %s", ", ".join(removed))

    def _collect_released_leases(self) -> int:
        """The lease GC while announcements run: the released leases the leases reflector shows,
        each deleted with its resourceVersion as precondition; no request while there are none
        (a list every minute from every node would be most of economy mode's API traffic)."""
        from common.leases import is_agent_lease
        from common.tables.leases import LEASES

        with self.db.read_txn() as r:
            if not r.initialized(LEASES):
                return 0
            released = [
                (x.name, x.resource_version)
                for x in r.all(LEASES)
                if not x.holder and is_agent_lease(x.name)
            ]
        return len(self.lease_api.delete_versions(released))

    def _collect_garbage_once(self) -> None:
        try:
            self.lease_api.collect_garbage()
        except Exception as e:
            log.warning("lease GC failed: %s", e)

    # -- stop -----------------------------------------------------------------------------------

    def _await_withdrawal(self) -> None:
        """Before the announcer releases a lease it still holds: the responder has removed the
        withdrawn keys (or the handover's bound has passed)."""
        if self.responder is not None:
            self.responder.wait_until_reconciled(HANDOVER_RECONCILE_TIMEOUT, allow_errors=True)

    def _hand_over(self) -> None:
        """Withdraw every entry, let the responder remove the keys, then release the leases;
        followers take each lease as soon as they see its release. Once only."""
        if self._handed_over or self.elector is None:
            return
        self._handed_over = True
        if self.announcer is not None and self._announcer_started:
            self.announcer.stop()  # withdraws every entry
            if self.responder is not None:
                self.responder.wait_until_reconciled(HANDOVER_RECONCILE_TIMEOUT, allow_errors=True)
        self.elector.stop(release_timeout=HANDOVER_RELEASE_TIMEOUT)  # then release the leases

    def stop(self) -> None:
        """Hand the leases over, then stop every module in reverse start order; never raises.

        The handover goes first because every module stopped before it delays the followers:
        the metrics server alone takes up to half a second to stop (its serve loop polls)."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        started = self.clock.monotonic()
        try:
            self._hand_over()
        except Exception:
            log.exception("stopping handover failed")
        uninstalling = self._uninstalling()  # asked after the handover, which must not wait
        self.lifecycle.stop()
        if uninstalling:
            self._clean_node()
        log.info("l2announcer agent stopped in %.2fs", self.clock.monotonic() - started)

    def _uninstalling(self) -> bool:
        """Whether this stop is an uninstall: our DaemonSet is gone or being deleted. Not knowing
        (no DaemonSet named, the API unreachable or refusing) counts as a restart, which keeps the
        datapath for the next agent."""
        from agent.k8s.uninstall import DaemonSetState, daemonset_state

        if not self._daemonset:
            return False
        state, how = daemonset_state(
            self.api_client, self.config.k8s_namespace, self._daemonset, UNINSTALL_CHECK_TIMEOUT
        )
        if state is DaemonSetState.DELETED:
            log.info("%s: uninstalling, removing this node's datapath and state files", how)
            return True
        if state is DaemonSetState.UNKNOWN:
            log.warning("%s; stopping as for a restart (datapath kept)", how)
        return False

    def _clean_node(self) -> None:
        """After every module stopped: remove this node's tc filters, pins and state files."""
        from agent.cleanup import clean_node, remove_state_files

        try:
            if self.use_datapath:
                removed, left = clean_node(self.config.bpf_root, self.config.state_dir)
            else:
                removed, left = remove_state_files(self.config.state_dir)
        except Exception as e:
            log.warning("uninstall: cleaning up this node failed: %s", e)
            return
        for line in removed:
            log.info("uninstall: removed %s", line)
        for line in left:
            log.info("uninstall: %s", line)
