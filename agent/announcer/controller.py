"""The l2-announcer controller, level-triggered.

One job waits for any change of the tables it reads (services, policies, nodes, devices,
leases) or a leadership change, then recomputes everything from the current rows:

1. each policy's checks against this node (conditions go to the status writer, which writes
   only what changed; a new error or a cleared condition is logged once). A policy whose current
   version fails a check keeps selecting with its last valid version (agent/policy/last_valid.py),
   so a bad edit never withdraws anything;
2. the Services some policy selects here -> the elector campaigns for exactly their leases.
   ``spec.externalIPs`` count only with ``enable-external-ips`` (a Service selected for them alone
   gets no lease without it; this is logged once per Service and shown in the health message);
3. for the Services whose lease this node holds, the (IP, interface) entries -> ``l2-announce``,
   written as a diff in one transaction (an unchanged entry is not touched, so its status and
   the BPF counter behind it stay). A held lease with nothing to announce (no device matches,
   no valid IP) says why in the health message and, once, in the log.

Lease rows are handed to the elector as it watches them (followers never poll). When the elector
reports that a lease is lost, that Service's entries are withdrawn at once, in the callback,
before the elector even sends a release.

It does nothing until its own Node and the services, policies and devices tables are initialized:
a pass over a partial listing would campaign for too few Services, or withdraw the entries of
Services it has not read yet. Its health says so (Starting) meanwhile. It marks ``l2-announce``
initialized (which lets the l2-responder prune stale BPF keys) only once the elector has settled:
a restarted agent first takes back the leases the API still shows it holding, so the keys it
announced before the restart are never pruned in between (at most ``settle_timeout`` waits).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from agent.announcer.gates import ExcludedNode, Gate, GateView, Refusal, first_refusal
from agent.announcer.placement_groups import ServiceKey, shared_ip_leaders, shared_with
from agent.announcer.policy_log import PolicyLog
from agent.leases.elector import Elector
from agent.leases.record import record_from_row
from agent.logfmt import fields
from agent.policy.conditions import updated_conditions
from agent.policy.evaluate import (
    PolicyView,
    desired_entries,
    selecting_policies,
    why_nothing_to_announce,
)
from agent.policy.last_valid import LastValidPolicies
from agent.runtime import Backoff, Clock, Health, HealthReporter, Job, RealClock
from common.leases import lease_name
from common.tables.contest import L2_CONTEST, ContestEntry, ContestState
from common.tables.devices import DEVICES, DEVICES_SELECTED
from common.tables.l2_announce import L2_ANNOUNCE, L2AnnounceEntry, Origin
from common.tables.leases import LEASES
from common.tables.nodes import NODES
from common.tables.policies import POLICIES, Policy
from common.tables.services import SERVICES, Service
from statedb import Database, Status, Table
from statedb.changes import Consumer

log = logging.getLogger("l2announcer.announcer")

# (policy name, conditions): hand them to the status writer (which deduplicates); the policy's
# generation is in each condition's observedGeneration
ConditionWriter = Callable[[str, list[dict[str, Any]]], None]
# (namespace, name, holder): another node holds the lease of a Service we campaign for
HolderSeen = Callable[[str, str, str], None]
# (old row or None, new row, whether its refusal is cluster-wide): a Service's l2-contest row changed
ContestChanged = Callable[[ContestEntry | None, ContestEntry, bool], None]

WAIT_TABLES: tuple[Table[Any], ...] = (SERVICES, POLICIES, NODES, DEVICES)

RETRY_AFTER_FAILURE = Backoff(first=1.0, cap=1.0)
"""A pass that raised is retried every second, not after a growing backoff: the announcer is on
the failover path, and once the cause is gone (a bad row replaced) the node must act at once."""

IDLE_WAKE = 5.0
"""Seconds between two passes' checks when nothing happens: commits and leadership changes wake
the loop at once, so this only bounds how long a missed wake-up could delay a pass."""

SETTLE_POLL = 0.05
"""Until ``l2-announce`` is initialized, the loop looks again this often (seconds): the elector
may settle without any event (a failed attempt to take a lease back), and the settle timeout must
be noticed."""


def _gate_recheck(gate: Gate) -> float | None:
    """A gate whose verdicts depend on time as well as tables says when to ask again."""
    recheck = getattr(gate, "recheck_in", None)
    return None if recheck is None else recheck()


class L2Announcer:
    def __init__(
        self,
        db: Database,
        elector: Elector,
        node_name: str,
        write_conditions: ConditionWriter,
        settle_timeout: float = 5.0,
        external_ips: bool = False,
        on_other_holder: HolderSeen | None = None,
        *,
        clock: Clock | None = None,
        gates: list[Gate] | None = None,
        on_contest: ContestChanged | None = None,
        before_release: Callable[[], object] | None = None,
    ) -> None:
        self.name = "l2-announcer"
        self.db = db
        self.elector = elector
        self.node_name = node_name
        self._write_conditions = write_conditions
        self.external_ips = external_ips  # enable-external-ips
        self._on_other_holder = on_other_holder
        self._on_contest = on_contest
        # Waits (bounded) until the datapath has dropped what this node withdrew: a lease it
        # gives up while holding is released only then, as on a planned stop.
        self._before_release = before_release
        # The agent passes gates.default_gates(...) built from its configuration; on its own (tests,
        # tools) the announcer applies only the gates that need no input of their own.
        self._gates = [ExcludedNode()] if gates is None else gates
        # The tables a pass reads: ours, then every gate's (deduplicated, in order).
        self._inputs: tuple[Table[Any], ...] = tuple(
            dict.fromkeys([*WAIT_TABLES, *(t for g in self._gates for t in g.tables)])
        )
        # A gate's optional tables are waited for at most its optional_wait seconds from start
        # (it then decides without them, see PlacementGate).
        self._optional: dict[str, float] = {}
        for g in self._gates:
            for t in getattr(g, "optional_tables", ()):
                wait = float(getattr(g, "optional_wait", 0.0))
                self._optional[t.name] = max(wait, self._optional.get(t.name, 0.0))
        # Services a gate keeps this node from contesting -> the refusal (logged on change)
        self.refused: dict[tuple[str, str], Refusal] = {}
        self._policies = LastValidPolicies()
        self._policy_log = PolicyLog()
        # Services whose spec.externalIPs a policy would announce, left out (the key is off)
        self.external_ips_ignored: set[tuple[str, str]] = set()
        # Services whose lease we hold with nothing to announce -> why
        self.nothing_to_announce: dict[tuple[str, str], str] = {}
        self._clock = clock or RealClock()
        self._lock = threading.RLock()
        self._dirty = threading.Event()
        # lease name -> the Services it stands for: the one whose name it bears, or every
        # Service this node selects in a group that shares an address (placement_groups.py)
        self._wanted: dict[str, tuple[ServiceKey, ...]] = {}
        self._consumers: dict[str, Consumer[Any]] = {}
        # Each lease's holder as last fed: a change of holder is a new input for the gates
        # (placement), a renewal is not.
        self._holders: dict[str, str] = {}
        self.health = HealthReporter(
            self.name,
            initial=Health.starting("waiting for the node, services, policies and devices"),
        )
        self._job = Job(
            self.name,
            self._run,
            wake=db.notify_waiters,
            health=self.health,
            backoff=RETRY_AFTER_FAILURE,
        )
        self.recomputes = 0
        self._settle_timeout = settle_timeout
        self._started_at = self._clock.monotonic()
        self.initialized = False
        self.selected_leases = 0
        add_listener = getattr(self._clock, "on_advance", None)
        if add_listener is not None:
            add_listener(db.notify_waiters)  # a test's clock moved: a gate's recheck may be due

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.open_feeds()
        self._job.start()

    def open_feeds(self) -> None:
        """What ``start`` does before the loop runs: claim l2-announce's initialization and
        follow the input tables. Scenario tests call it, then ``run_round`` on their own thread."""
        self._started_at = self._clock.monotonic()
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            txn.register_initializer(L2_ANNOUNCE, "l2-announcer")
        for t in (*self._inputs, LEASES):
            self._consumers[t.name] = self.db.register_consumer(f"announcer:{t.name}", t)

    def stop(self) -> None:
        """Stop computing and withdraw every entry (before the elector releases the leases)."""
        self._job.stop()
        with self._lock:
            self._write_entries({})
        for c in self._consumers.values():
            c.close()

    # -- elector callback ---------------------------------------------------------------------

    def on_leadership(self, lease: str, leading: bool, reason: str) -> None:
        if not leading:
            with self._lock:
                for svc in self._wanted.get(lease, ()):
                    self._withdraw(Origin(*svc))
        self._dirty.set()
        self.db.notify_waiters()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self, stopping: threading.Event) -> None:
        # A pass that raised is not lost: the job's guard logs it, marks the announcer Degraded
        # and calls this again, which recomputes at once.
        self._dirty.set()
        while not stopping.is_set():
            self.run_round()
            self._job.succeeded()
            after = {self._consumers[t.name].table: self._consumers[t.name].revision
                     for t in (*self._inputs, LEASES)}  # fmt: skip
            timeout = IDLE_WAKE if self.initialized else SETTLE_POLL
            recheck = self._recheck_in()
            if recheck is not None:
                timeout = min(timeout, max(recheck, SETTLE_POLL))
            self.db.wait_for_any(
                after,
                timeout=timeout,
                until=lambda: self._dirty.is_set() or stopping.is_set() or self._recheck_due(),
            )
            if self._recheck_due():
                self._dirty.set()

    def _recheck_in(self) -> float | None:
        """Seconds until a gate's verdict may change with no input changing (a free lease's
        grace running out, the next paced handover), or None."""
        waits = [w for g in self._gates if (w := _gate_recheck(g)) is not None]
        return min(waits) if waits else None

    def _recheck_due(self) -> bool:
        recheck = self._recheck_in()
        return recheck is not None and recheck <= 0

    def run_round(self) -> None:
        """One pass of the loop: the lease changes to the elector, then a recompute if any input
        changed, leadership moved, or l2-announce is not initialized yet."""
        self._feed_leases()
        changed = False
        for t in self._inputs:
            changed |= bool(self._consumers[t.name].changes())
        if changed or self._dirty.is_set() or not self.initialized:
            self._dirty.clear()
            self._recompute()

    def _feed_leases(self) -> None:
        for ch in self._consumers[LEASES.name].changes():
            self.elector.observe(ch.row.name, None if ch.deleted else record_from_row(ch.row))
            holder = "" if ch.deleted else ch.row.holder
            if self._holders.get(ch.row.name, "") != holder:
                self._dirty.set()
                if holder:
                    self._holders[ch.row.name] = holder
                else:
                    self._holders.pop(ch.row.name, None)
            if (
                self._on_other_holder is not None
                and holder not in ("", self.node_name)
                and not self.elector.is_leading(ch.row.name)  # not a stale row
            ):
                with self._lock:
                    members = self._wanted.get(ch.row.name, ())
                for svc in members:
                    self._on_other_holder(*svc, holder)

    def _recompute(self) -> None:
        # One read for everything a pass needs: one transaction, and one consistent view, which
        # the gates read too.
        with self.db.read_txn() as r:
            waited = self._clock.monotonic() - self._started_at
            if not all(
                r.initialized(t) or waited >= self._optional.get(t.name, math.inf)
                for t in self._inputs
            ):
                return
            node = r.get(NODES, self.node_name)
            if node is None:
                return
            labels = dict(node.labels)
            devices = [d.name for d in r.list(DEVICES_SELECTED, True)]
            policies = r.all(POLICIES)
            services = r.all(SERVICES)
            views = self._policies.evaluate(policies, labels, devices)
            if not self.external_ips:
                services = self._without_external_ips(services, views)
            selected: dict[str, tuple[Service, list[PolicyView]]] = {}
            for s in services:
                pols = selecting_policies(s, views)
                if pols:
                    selected[lease_name(s.namespace, s.name)] = (s, pols)
            refused = self._gate(selected, GateView(self.node_name, labels, r))
            # Services sharing an address follow their group leader's lease: the lease each
            # selected Service's announcement hangs on.
            leaders = shared_ip_leaders(services)
            follows = {
                x: lease_name(*leaders.get((s.namespace, s.name), (s.namespace, s.name)))
                for x, (s, _) in selected.items()
            }
            holders = {
                x: row.holder if (row := r.get(LEASES, follows[x])) else "" for x in selected
            }
        # The leases this node may come to hold (placement may keep it from most of them now):
        # what the client rate limit must be sized for (api_usage.py).
        self.selected_leases = len(set(follows.values()))
        self._policy_log.update(policies, views)
        self._update_conditions(policies, views)
        self._log_refusals(selected, refused)

        contested = {x: v for x, v in selected.items() if x not in refused}
        # lease to campaign for -> the contested Services it stands for
        units: dict[str, list[ServiceKey]] = {}
        for x, (s, _) in contested.items():
            units.setdefault(follows[x], []).append((s.namespace, s.name))
        idle: dict[tuple[str, str], str] = {}
        with self._lock:
            # A lease held but no longer contested (refused by a gate, or let go by its
            # policy) is released only after its entries are out of the datapath, as on a
            # planned stop: otherwise the next holder can answer while this node still does.
            releasing = [x for x in self._wanted if x not in units and self.elector.is_leading(x)]
            desired: dict[tuple[str, str], set[Origin]] = {}
            leading = {x for x in contested if self.elector.is_leading(follows[x])}
            for lease in leading:
                s, pols = contested[lease]
                entries = desired_entries(s, pols)
                if not entries:
                    idle[(s.namespace, s.name)] = self._why_idle(s, pols, devices)
                for key, origin in entries.items():
                    desired.setdefault(key, set()).add(origin)
            self._write_entries({k: tuple(sorted(v)) for k, v in desired.items()})
        if releasing and self._before_release is not None:
            self._before_release()  # outside the lock: the elector's callback takes it
        with self._lock:
            self._campaign(units)
        self._log_idle(idle)
        self._write_contest(services, selected, refused, leading, holders, follows, leaders)
        self.recomputes += 1
        if not self.initialized:
            waited = self._clock.monotonic() - self._started_at
            if self.elector.settled() or waited >= self._settle_timeout:
                with self.db.write_txn(L2_ANNOUNCE) as txn:
                    txn.initializer_done(L2_ANNOUNCE, "l2-announcer")
                self.initialized = True
        self.health.ok(
            f"{len(selected)} service(s) selected, leading {len(leading)}"
            + (f", {len(refused)} not contested" if refused else "")
            + self._notes()
        )

    # -- gates ---------------------------------------------------------------------------------

    def _gate(
        self, selected: dict[str, tuple[Service, list[PolicyView]]], view: GateView
    ) -> dict[str, Refusal]:
        """The selected Services a gate keeps this node from contesting, by lease name."""
        refused = {}
        for lease, (s, pols) in selected.items():
            refusal = first_refusal(self._gates, s, desired_entries(s, pols), view)
            if refusal is not None:
                refused[lease] = refusal
        return refused

    def _log_refusals(
        self, selected: dict[str, tuple[Service, list[PolicyView]]], refused: dict[str, Refusal]
    ) -> None:
        """One log line when a Service starts or stops being refused, or its reason changes.
        Not for placement's ``placed-elsewhere``, the usual state of most Services on most
        nodes (l2-contest shows it; the placement gate logs the handovers it starts)."""
        now = {(selected[x][0].namespace, selected[x][0].name): r for x, r in refused.items()}
        for key, refusal in sorted(now.items()):
            if refusal.reason == "placed-elsewhere":
                continue
            if self.refused.get(key) != refusal:
                log.info(
                    "Not contesting the lease of a service",
                    extra=fields(
                        service=f"{key[0]}/{key[1]}",
                        reason=refusal.reason,
                        detail=refusal.detail,
                    ),
                )
        for key in sorted(self.refused.keys() - now.keys()):
            if self.refused[key].reason == "placed-elsewhere":
                continue
            log.info(
                "Contesting the lease of a service again",
                extra=fields(service=f"{key[0]}/{key[1]}"),
            )
        self.refused = now

    # -- l2-contest ----------------------------------------------------------------------------

    def _write_contest(
        self,
        services: list[Service],
        selected: dict[str, tuple[Service, list[PolicyView]]],
        refused: dict[str, Refusal],
        leading: set[str],
        holders: dict[str, str],
        follows: dict[str, str],
        leaders: dict[ServiceKey, ServiceKey],
    ) -> None:
        """One row per Service with an address to announce: what this node does about it and why.
        Written as a diff: an unchanged row is not touched."""
        rows: dict[tuple[str, str], ContestEntry] = {}
        by_key = {(s.namespace, s.name): s for s in services}
        for s in services:
            key = (s.namespace, s.name)
            lease = lease_name(*key)
            if lease not in selected:
                if s.load_balancer_ips or s.external_ips or key in self.external_ips_ignored:
                    rows[key] = self._not_selected(s)
                continue
            holder = holders.get(lease, "")
            if lease in refused:
                ref = refused[lease]
                rows[key] = ContestEntry(*key, ContestState.REFUSED, ref.reason, holder, ref.detail)
            elif follows[lease] != lease:
                rows[key] = self._follower(key, lease in leading, holder, follows[lease],
                                           shared_with(key, leaders, by_key))  # fmt: skip
            elif lease in leading:
                why = self.nothing_to_announce.get(key)
                rows[key] = (
                    ContestEntry(
                        *key, ContestState.IDLE, "nothing-to-announce", self.node_name, why
                    )
                    if why is not None
                    else ContestEntry(*key, ContestState.ANNOUNCING, "", self.node_name)
                )
            elif holder and holder != self.node_name:
                rows[key] = ContestEntry(
                    *key, ContestState.STANDBY, "held-by-other", holder,
                    f"node {holder} holds the lease; this node takes over if it stops renewing",
                )  # fmt: skip
            else:
                rows[key] = ContestEntry(
                    *key, ContestState.STANDBY, "", holder, "campaigning for the lease"
                )
        old: dict[tuple[str, str], ContestEntry] = {}
        with self.db.write_txn(L2_CONTEST) as txn:
            for row in txn.all(L2_CONTEST):
                key = (row.namespace, row.name)
                if key not in rows:
                    txn.delete(L2_CONTEST, row)
                elif rows[key] == row:
                    del rows[key]
                else:
                    old[key] = row
            for row in rows.values():
                txn.upsert(L2_CONTEST, row)
        if self._on_contest is not None:
            for key, row in sorted(rows.items()):
                refusal = refused.get(lease_name(*key))
                self._on_contest(old.get(key), row, refusal is not None and refusal.cluster_wide)

    def _follower(
        self, key: ServiceKey, leading: bool, holder: str, lease: str, ip: str
    ) -> ContestEntry:
        """The row of a Service that shares an address with a group and follows its leader's
        lease: one node answers for the shared address, whichever member's lease it would be."""
        detail = f"shares {ip} with other services: announced by the holder of lease {lease}"
        if leading:
            why = self.nothing_to_announce.get(key)
            if why is not None:
                return ContestEntry(
                    *key, ContestState.IDLE, "follows-lease", self.node_name, f"{detail}; {why}"
                )
            return ContestEntry(*key, ContestState.ANNOUNCING, "follows-lease", self.node_name,
                                detail)  # fmt: skip
        return ContestEntry(*key, ContestState.STANDBY, "follows-lease", holder, detail)

    def _not_selected(self, s: Service) -> ContestEntry:
        key = (s.namespace, s.name)
        if key in self.external_ips_ignored and not s.load_balancer_ips:
            detail = "its spec.externalIPs are not announced: enable-external-ips is false"
        else:
            detail = "no policy selects this service for this node"
        return ContestEntry(*key, ContestState.NOT_SELECTED, "not-selected", "", detail)

    def _notes(self) -> str:
        """What the health message adds: held leases with nothing to announce, and Services whose
        external IPs are left out, each with the first one as an example."""
        notes = ""
        if self.nothing_to_announce:
            (ns, name), why = min(self.nothing_to_announce.items())
            notes += (
                f"; nothing to announce for {len(self.nothing_to_announce)} held lease(s), "
                f"e.g. {ns}/{name}: {why}"
            )
        if self.external_ips_ignored:
            ns, name = min(self.external_ips_ignored)
            notes += (
                f"; spec.externalIPs of {len(self.external_ips_ignored)} service(s) not "
                f"announced (e.g. {ns}/{name}): enable-external-ips is false"
            )
        return notes

    # -- enable-external-ips -------------------------------------------------------------------

    def _without_external_ips(
        self, services: list[Service], views: list[PolicyView]
    ) -> list[Service]:
        """The Services as if they had no spec.externalIPs (the key is off); the ones a policy
        would announce them for are remembered, and logged once each."""
        out = []
        ignored = set()
        for s in services:
            if s.external_ips is None:
                out.append(s)
                continue
            stripped = dataclasses.replace(s, external_ips=None)
            out.append(stripped)
            if not s.external_ips:
                continue  # present but empty: there was nothing to announce anyway
            wanted = [v.name for v in selecting_policies(s, views) if v.external_ips]
            if not wanted:
                continue
            key = (s.namespace, s.name)
            ignored.add(key)
            if key not in self.external_ips_ignored:
                log.warning(
                    "Not announcing the external IPs of a service: enable-external-ips is false",
                    extra=fields(
                        service=f"{s.namespace}/{s.name}",
                        externalIPs=",".join(s.external_ips),
                        policy=",".join(wanted),
                    ),
                )
        self.external_ips_ignored = ignored
        return out

    # -- held leases with nothing to announce ----------------------------------------------------

    def _why_idle(self, s: Service, pols: list[PolicyView], devices: list[str]) -> str:
        why = why_nothing_to_announce(s, pols, devices)
        if (s.namespace, s.name) in self.external_ips_ignored:
            why += " (its spec.externalIPs are not announced: enable-external-ips is false)"
        return why

    def _log_idle(self, idle: dict[tuple[str, str], str]) -> None:
        for key, why in sorted(idle.items()):
            if self.nothing_to_announce.get(key) != why:
                log.warning(
                    "Holding the lease of a service but announcing nothing",
                    extra=fields(service=f"{key[0]}/{key[1]}", reason=why),
                )
        self.nothing_to_announce = idle

    def _campaign(self, units: dict[str, list[ServiceKey]]) -> None:
        for lease in [x for x in self._wanted if x not in units]:
            self.elector.want(lease, False)
            dropped = self._wanted.pop(lease)
            if self._on_other_holder is not None:
                # No longer followed: whoever holds it next, our next announcement is news
                # (a Service deleted and created again, a node selected again later).
                for svc in dropped:
                    self._on_other_holder(*svc, "")
        new = [x for x in units if x not in self._wanted]
        for lease, members in units.items():
            self._wanted[lease] = tuple(sorted(members))
        if new:
            with self.db.read_txn() as r:
                known = r.initialized(LEASES)
                rows = {x: r.get(LEASES, x) for x in new}
            for lease in new:
                self.elector.want(lease, True)
                row = rows[lease]
                if row is not None:
                    self.elector.observe(lease, record_from_row(row))
                elif known:
                    self.elector.observe(lease, None)

    # -- l2-announce ---------------------------------------------------------------------------

    def _write_entries(self, desired: dict[tuple[str, str], tuple[Origin, ...]]) -> None:
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            for row in txn.all(L2_ANNOUNCE):
                key = (row.ip, row.network_interface)
                if key not in desired:
                    txn.delete(L2_ANNOUNCE, row)
                elif desired[key] == row.origins:
                    del desired[key]  # unchanged: keep its status (and the counter behind it)
            for (ip, iface), origins in desired.items():
                txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(ip, iface, origins, Status.pending()))

    def _withdraw(self, origin: Origin) -> None:
        with self.db.write_txn(L2_ANNOUNCE) as txn:
            for row in txn.all(L2_ANNOUNCE):
                if origin not in row.origins:
                    continue
                rest = tuple(o for o in row.origins if o != origin)
                if rest:
                    txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(row.ip, row.network_interface, rest))
                else:
                    txn.delete(L2_ANNOUNCE, row)

    # -- policy conditions ---------------------------------------------------------------------

    def _update_conditions(self, policies: list[Policy], views: list[PolicyView]) -> None:
        for p, v in zip(policies, views, strict=True):
            new = updated_conditions(p.conditions, v.checks, p.generation, self._clock.now())
            if new is not None:
                self._write_conditions(p.name, new)
