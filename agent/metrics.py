"""Prometheus metrics (``prometheus-serve-addr``, off by default, as in Cilium's agent).

Series (all prefixed ``l2announcer_``; documented in docs/metrics.md):

- ``arp_responses_sent_total{ip,interface}``: ARP requests (for an IPv6 ``ip``, Neighbour
  Solicitations) the datapath answered, read from the BPF maps' counters at scrape time (the map is pinned and only missing keys are written, so
  they survive reconciliation and agent restarts);
- ``gratuitous_arp_sent_total{ip,interface}``: gratuitous ARPs (unsolicited Neighbour
  Advertisements for an IPv6 ``ip``) sent;
- ``announced{namespace,service,ip,interface}``: 1 per (IP, interface) this node answers for, with
  the Service wanting it ("which node owns my IP?");
- ``leases{state="held"|"followed"}``: leases this node holds, and those it follows;
- ``lease_transitions_total{event="acquired"|"lost"}``;
- ``takeover_latency_seconds``: from a lease becoming available (release seen, or expiry) to
  this node leading;
- ``k8s_requests_total{verb,code}``, ``k8s_client_throttled_requests_total``,
  ``k8s_client_throttled_seconds_total``: API traffic and client-side rate-limiter waits;
- ``reconcile_errors{reconciler}``: rows whose reconcile status is Error;
- ``vip_conflicts{ip,interface}``: other hosts (foreign MACs) answering now for a VIP this node
  announces (the ``conflicts`` table); ``vip_conflict_packets_total{ip,interface}``: their ARP
  packets heard; ``vip_conflict_defences_total{ip,interface}``: defending gratuitous ARPs sent;
- ``module_health{module,level}``: 1 for each module's current level.

Metrics are not essential: a port that is taken (by another agent on the host network, say) is
one warning and a Degraded ``metrics`` health row naming the address, retried with backoff, while
the agent keeps announcing (:class:`MetricsServer`); never an exit and a crash loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.leases.api import Campaign, CampaignState
from agent.runtime import Backoff, HealthReporter, Job
from common.tables.conflicts import CONFLICTS
from common.tables.devices import DEVICES
from common.tables.fence import L2_FENCE
from common.tables.health import HEALTH
from common.tables.l2_announce import L2_ANNOUNCE
from statedb import Database, StatusKind

log = logging.getLogger("l2announcer.metrics")

P = "l2announcer_"
TAKEOVER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

LISTEN_RETRY = Backoff(first=1.0, cap=30.0)
"""Between attempts to listen while the metrics port is taken: soon after a brief overlap (an old
process still closing its socket), then at most twice a minute, so a port taken for good costs
nothing and metrics come back within 30 s of it being freed."""


class _StateCollector(Collector):
    """Series read at scrape time from the state database and the BPF map."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Attached when the modules behind them start (None: not running, no series).
        self.responder_items: Callable[[], list[tuple[str, int, int]]] | None = None
        self.campaigns: Callable[[], dict[str, Campaign]] | None = None

    def collect(self) -> Iterator[Any]:
        yield from self._datapath_and_leases()
        yield from self._tables()

    def _datapath_and_leases(self) -> Iterator[Any]:
        if self.responder_items is not None:
            with self.db.read_txn() as r:
                names = {d.ifindex: d.name for d in r.all(DEVICES)}
            sent = CounterMetricFamily(
                P + "arp_responses_sent",
                "ARP requests (Neighbour Solicitations for an IPv6 ip) answered by the datapath, "
                "from the BPF maps' counters.",
                labels=["ip", "interface"],
            )
            try:
                for ip, ifindex, count in self.responder_items():
                    sent.add_metric([ip, names.get(ifindex, str(ifindex))], count)
            except OSError as err:
                log.warning("reading the responder map for metrics failed: %s", err)
            yield sent
        if self.campaigns is not None:
            states = list(self.campaigns().values())
            leases = GaugeMetricFamily(
                P + "leases", "Leases this node holds or follows.", labels=["state"]
            )
            leases.add_metric(["held"], sum(c.state is CampaignState.LEADING for c in states))
            leases.add_metric(["followed"], sum(c.state is CampaignState.FOLLOWING for c in states))
            yield leases

    def _tables(self) -> Iterator[Any]:
        with self.db.read_txn() as r:
            entries = r.all(L2_ANNOUNCE)
            health = r.all(HEALTH)
            conflicts = r.all(CONFLICTS)
            fences = r.all(L2_FENCE)
        announced = GaugeMetricFamily(
            P + "announced",
            "1 for each (IP, interface) this node answers ARP for, per Service wanting it.",
            labels=["namespace", "service", "ip", "interface"],
        )
        errors = 0
        for entry in entries:
            errors += entry.status.kind is StatusKind.ERROR
            for o in entry.origins:
                announced.add_metric([o.namespace, o.name, entry.ip, entry.network_interface], 1)
        yield announced
        rec = GaugeMetricFamily(
            P + "reconcile_errors", "Rows whose reconcile status is Error.", labels=["reconciler"]
        )
        rec.add_metric(["l2-responder"], errors)
        yield rec
        vc = GaugeMetricFamily(
            P + "vip_conflicts",
            "Other hosts (foreign MACs) answering ARP now for a VIP this node announces.",
            labels=["ip", "interface"],
        )
        per_pair: dict[tuple[str, str], int] = {}
        for c in conflicts:
            per_pair[c.ip, c.network_interface] = per_pair.get((c.ip, c.network_interface), 0) + 1
        for (ip, iface), n in sorted(per_pair.items()):
            vc.add_metric([ip, iface], n)
        yield vc
        fenced = GaugeMetricFamily(
            P + "fenced",
            "1 for each interface (ip empty) or responder entry this node cannot serve on now "
            "(self-fencing: the l2-fence table).",
            labels=["interface", "ip", "kind", "reason"],
        )
        for f in fences:
            fenced.add_metric([f.interface, f.ip, f.kind, f.reason], 1)
        yield fenced
        mh = GaugeMetricFamily(
            P + "module_health", "1 for each module's current level.", labels=["module", "level"]
        )
        for h in health:
            mh.add_metric([h.module, h.level], 1)
        yield mh


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.garp_sent = Counter(
            P + "gratuitous_arp_sent",
            "Gratuitous ARP packets sent.",
            ["ip", "interface"],
            registry=self.registry,
        )
        self.lease_transitions = Counter(
            P + "lease_transitions",
            "Leadership changes of this node.",
            ["event"],
            registry=self.registry,
        )
        self.takeover = Histogram(
            P + "takeover_latency_seconds",
            "From a lease becoming available (release seen, or expiry) to this node leading.",
            buckets=TAKEOVER_BUCKETS,
            registry=self.registry,
        )
        self.k8s_requests = Counter(
            P + "k8s_requests",
            "Kubernetes API requests by verb and HTTP status code (error: no answer).",
            ["verb", "code"],
            registry=self.registry,
        )
        self.throttled = Counter(
            P + "k8s_client_throttled_requests",
            "API requests that waited in the client-side rate limiter.",
            registry=self.registry,
        )
        self.throttled_seconds = Counter(
            P + "k8s_client_throttled_seconds",
            "Seconds API requests waited in the client-side rate limiter.",
            registry=self.registry,
        )
        self.conflict_packets = Counter(
            P + "vip_conflict_packets",
            "ARP packets from another host claiming a VIP this node announces.",
            ["ip", "interface"],
            registry=self.registry,
        )
        self.conflict_defences = Counter(
            P + "vip_conflict_defences",
            "Gratuitous ARPs sent to defend a VIP against another host.",
            ["ip", "interface"],
            registry=self.registry,
        )
        self._server: Any = None

    def watch_state(
        self,
        db: Database,
        responder_items: Callable[[], list[tuple[str, int, int]]] | None = None,
        campaigns: Callable[[], dict[str, Campaign]] | None = None,
    ) -> None:
        """The series read at scrape time: the tables', and (once given) the BPF counters and
        the leases; ``responder_items`` and ``campaigns`` may also be attached later."""
        self._state = _StateCollector(db)
        self.registry.register(self._state)
        self.attach(responder_items, campaigns)

    def attach(
        self,
        responder_items: Callable[[], list[tuple[str, int, int]]] | None = None,
        campaigns: Callable[[], dict[str, Campaign]] | None = None,
    ) -> None:
        """Sources of the BPF-counter and lease series, as the modules behind them start."""
        if responder_items is not None:
            self._state.responder_items = responder_items
        if campaigns is not None:
            self._state.campaigns = campaigns

    # -- hooks ---------------------------------------------------------------------------------

    def on_leadership(self, lease: str, leading: bool, reason: str) -> None:
        self.lease_transitions.labels("acquired" if leading else "lost").inc()

    def on_takeover(self, lease: str, seconds: float) -> None:
        self.takeover.observe(seconds)

    def on_request(self, verb: str, code: str) -> None:
        self.k8s_requests.labels(verb, code).inc()

    def on_throttle(self, seconds: float) -> None:
        self.throttled.inc()
        self.throttled_seconds.inc(seconds)

    def on_garp(self, ip: str, interface: str) -> None:
        self.garp_sent.labels(ip, interface).inc()

    def on_conflict_packet(self, ip: str, interface: str) -> None:
        self.conflict_packets.labels(ip, interface).inc()

    def on_conflict_defence(self, ip: str, interface: str) -> None:
        self.conflict_defences.labels(ip, interface).inc()

    # -- serving -------------------------------------------------------------------------------

    def serve(self, address: str) -> int:
        """Serve /metrics on ``address`` (``host:port``, ``:port`` for all); returns the port."""
        host, _, port = address.rpartition(":")
        self._server, _thread = start_http_server(
            int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry
        )
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class MetricsServer:
    """The ``metrics`` module: serves ``/metrics`` on ``address`` from a job of its own.

    A failure to listen is retried (``LISTEN_RETRY``); meanwhile the health row is Degraded with
    ``cannot listen on <address>: <reason>`` and the first failure is logged once. The rest of the
    agent does not wait for it.
    """

    name = "metrics"

    def __init__(self, metrics: Metrics, address: str, *, retry: Backoff = LISTEN_RETRY) -> None:
        self.metrics = metrics
        self.address = address
        self.port: int | None = None
        self.failures = 0  # attempts to listen that failed in a row
        self._retry = retry
        self.health = HealthReporter(self.name)
        self._job = Job(self.name, self._run, health=self.health)

    def start(self) -> None:
        self._job.start()

    def stop(self) -> None:
        self._job.stop()
        self.metrics.stop()

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                self.port = self.metrics.serve(self.address)
            except OSError as e:
                self.failures += 1
                reason = (e.strerror or str(e)).lower()
                problem = f"cannot listen on {self.address}: {reason}"
                if self.failures == 1:
                    log.warning(
                        "metrics: %s; metrics are off until it is free (retrying every %gs at most)",
                        problem,
                        self._retry.cap,
                    )
                self.health.degraded(f"{problem}; retrying")
                stopping.wait(self._retry.delay(self.failures))
                continue
            if self.failures:
                log.info("metrics: listening after %d failed attempt(s)", self.failures)
                self.failures = 0
            log.info("serving Prometheus metrics on %s (port %d)", self.address, self.port)
            self.health.ok(f"serving on {self.address}")
            stopping.wait()
            return
