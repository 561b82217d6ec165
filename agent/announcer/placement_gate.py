"""The placement gate: a node contests a Service's lease only where placement puts it.

Every node computes the same placement (placement.py) from the same tables: the Services, the
policies, every node's labels (``nodes``, all nodes when placement is on), which agents are alive
(``l2-nodes``, their heartbeat Leases) and who holds each lease (``leases``). A node contests:

- a lease it holds, unless placement moves it away (it holds more than its cap): then it
  releases one such lease per ``pace`` seconds (the announcer withdraws, waits for the datapath,
  releases: the planned handover), so a node that joins gets its share without a burst of
  handovers, and never with two nodes answering;
- a lease held by a live node, when it is the destination of a move or the held unit's
  successor (the node that takes over if the holder stops renewing);
- a free lease (never taken, released, or held by a node whose agent is gone), when placement
  puts it here (one released for balance: when it was moving here), or when it has been free
  for ``grace`` seconds whoever it was placed on:
  availability never waits on balance (the chosen node may refuse it for a reason only it knows,
  such as no local endpoint, or may have died since).

Services that share an address are placed as one unit, under their group leader's lease
(placement_groups.py). Candidates are judged from the tables alone: a node is a candidate for a
Service when its agent is alive, it is not labelled out of external load balancing, a policy
selects the Service there by node labels, and, for ``externalTrafficPolicy: Local``, it has a
usable endpoint of the Service (when some node has one). A policy's interfaces are not checked for other nodes
(their devices are not in this node's tables): a node that matches by labels but has no such
interface holds the lease idle; the operator sees it as ``nothing-to-announce``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from agent.announcer.gate_etp import LOCAL
from agent.announcer.gates import EXCLUDE_LABEL, GateView, Refusal
from agent.announcer.placement import Placement, Unit, place
from agent.announcer.placement_groups import shared_ip_leaders
from agent.logfmt import fields
from agent.policy.evaluate import PolicyView, evaluate_policy, selecting_policies
from agent.runtime import Clock, RealClock
from common.leases import lease_name
from common.tables.endpoint_slices import ENDPOINT_SLICES, ENDPOINT_SLICES_BY_SERVICE, Backends
from common.tables.l2_announce import Origin
from common.tables.leases import LEASES
from common.tables.node_liveness import L2_NODES
from common.tables.nodes import NODES
from common.tables.policies import POLICIES
from common.tables.services import SERVICES, Service
from statedb import Table
from statedb.read_txn import Reader

log = logging.getLogger("l2announcer.placement")


@dataclasses.dataclass(frozen=True)
class _Pass:
    """What one pass decided, shared by every Service's check in it."""

    placement: Placement
    units: dict[str, Unit]
    unit_of: dict[tuple[str, str], str]
    releasing: frozenset[str]
    pending: int
    """Leases this node still has to release for balance, after ``releasing``."""
    free_for: dict[str, float]
    handed_to: dict[str, str]
    """Free units released for balance -> the node they were moving to (see ``_moving_to``)."""


class PlacementGate:
    """Contest only what placement puts on this node (see the module's description)."""

    name = "placement"
    # leases: the holders (the announcer recomputes on a change of holder, not on renewals)
    tables: tuple[Table[Any], ...] = (L2_NODES, POLICIES, SERVICES)
    # Waited for at most ``grace`` from start: a node that cannot list the Leases (missing
    # RBAC) would otherwise never contest anything, nor log the seed's line for its leases.
    optional_tables: tuple[Table[Any], ...] = (L2_NODES,)

    def __init__(
        self,
        *,
        pace: float,
        grace: float,
        rebalance: bool = True,
        external_ips: bool = False,
        clock: Clock | None = None,
        leading: Callable[[str], bool] | None = None,
    ) -> None:
        self.pace = pace
        """Seconds between two releases for balance by this node (the retry period)."""
        self.grace = grace
        """Seconds a lease may stay free before any candidate contests it; also how long the
        announcer waits at start for the heartbeats (``optional_wait``)."""
        self.optional_wait = grace
        self.rebalance = rebalance
        self.external_ips = external_ips
        self._clock = clock or RealClock()
        # This node's own leases as its elector knows them: the leases table shows an
        # acquisition only once the watch brings it back, and a pass in between must not take
        # a lease just taken for a free one placed elsewhere (and release it). A lease the table
        # still shows held here is taken as held until the table says otherwise.
        self._leading = leading
        self._reader: Reader | None = None
        # The last placement and its inputs: a pass whose units did not change (most passes:
        # a heartbeat renewed, a Service's other fields) reuses it.
        self._placed: tuple[dict[str, Unit], Placement] | None = None
        self._pass: _Pass | None = None
        self._free_since: dict[str, float] = {}
        # unit -> (its live holder, its successor) as of the last pass that saw it held: when the
        # holder dies, the successor that stood by keeps contesting, whatever placement now
        # says (its elector has followed the lease, so it takes over at expiry; a node that only
        # starts contesting then would wait a whole lease duration more).
        self._stood_by: dict[str, tuple[str, str]] = {}
        self._releasing: set[str] = set()
        # unit -> the node it was moving to, as of the last pass that saw it held and moving:
        # once its holder releases it, the free unit's placement is computed anew from holders
        # that are changing at that very moment (other holders are releasing too), and may
        # land on an old node; the destination every node agreed on keeps it for the grace.
        self._moving_to: dict[str, str] = {}
        self._last_release = -math.inf
        self.moves = 0
        """Leases this node released for balance since it started."""

    # -- the gate -----------------------------------------------------------------------------

    def check(
        self, service: Service, entries: Mapping[tuple[str, str], Origin], view: GateView
    ) -> Refusal | None:
        if not (view.read.initialized(L2_NODES) and view.read.initialized(LEASES)):
            # The announcer waited ``grace`` for them at start: contest as without placement
            # (the elector learns from the API what this node holds; later passes move leases
            # through planned handovers once the tables are there).
            return None
        p = self._for(view)
        key = p.unit_of.get((service.namespace, service.name))
        unit = p.units.get(key or "")
        if key is None or unit is None or view.node_name not in unit.candidates:
            return None  # not placeable from the tables (yet): as without placement
        me = view.node_name
        pl = p.placement
        if unit.held:
            if key in pl.moving:
                dest = pl.moving[key]
                if unit.holder == me:
                    if key in p.releasing:
                        return Refusal(
                            "rebalancing",
                            f"handing over to {dest}: this node holds more than {pl.cap} "
                            f"(at most ceil(services/nodes) + 1), one lease per {self.pace:g}s",
                        )
                    return None
                if dest == me:
                    return None
                return Refusal(
                    "placed-elsewhere", f"moving from {unit.holder} to {dest} to balance the nodes"
                )
            if unit.holder == me or pl.successor.get(key) == me:
                return None
            succ = pl.successor.get(key, "")
            return Refusal(
                "placed-elsewhere",
                f"held by {unit.holder}"
                + (f"; {succ} stands by to take over" if succ else "")
                + f"; this node contests if the lease stays free for {self.grace:g}s",
            )
        owner = p.handed_to.get(key) or pl.owner.get(key, "")
        if owner == me or p.free_for.get(key, 0.0) >= self.grace:
            return None
        if unit.holder and self._stood_by.get(key) == (unit.holder, me):
            return None  # its holder died while this node stood by
        return Refusal(
            "placed-elsewhere",
            f"placed on {owner} (at most {pl.cap} per node); this node contests if the lease "
            f"stays free for {self.grace:g}s",
        )

    def recheck_in(self) -> float | None:
        """Seconds until a decision of the last pass may change with no table changing: a free
        lease reaching its grace, or the next release for balance. None: nothing pending."""
        p = self._pass
        if p is None:
            return None
        now = self._clock.monotonic()
        waits = [
            self.grace - (now - self._free_since[k])
            for k in p.free_for
            if k in self._free_since and p.free_for[k] < self.grace
        ]
        if p.pending:
            waits.append(self._last_release + self.pace - now)
        return max(0.0, min(waits)) if waits else None

    # -- one computation per pass ---------------------------------------------------------------

    def _for(self, view: GateView) -> _Pass:
        if self._reader is not view.read or self._pass is None:
            self._pass = self._compute(view)
            self._reader = view.read
        return self._pass

    def _compute(self, view: GateView) -> _Pass:
        r = view.read
        me = view.node_name
        alive = {n.node for n in r.all(L2_NODES) if n.alive} | {me}
        labels = {n.name: dict(n.labels) for n in r.all(NODES)}
        labels.setdefault(me, dict(view.node_labels))
        policies = r.all(POLICIES)
        views: dict[str, list[PolicyView]] = {}
        for node in sorted(alive):
            node_labels = labels.get(node, {})
            if EXCLUDE_LABEL in node_labels:
                continue
            views[node] = [evaluate_policy(p, node_labels, ()) for p in policies]
        services = r.all(SERVICES)
        endpoints = r.initialized(ENDPOINT_SLICES)  # the agent reflects them; tests may not
        if not self.external_ips:
            services = [dataclasses.replace(s, external_ips=None) for s in services]
        leaders = shared_ip_leaders(services)
        unit_of: dict[tuple[str, str], str] = {}
        candidates: dict[str, set[str]] = {}
        for s in services:
            key = (s.namespace, s.name)
            unit = lease_name(*leaders.get(key, key))
            nodes = {n for n, vs in views.items() if selecting_policies(s, vs)}
            if endpoints and s.external_traffic_policy == LOCAL:
                # Only a node with a local endpoint contests a Local Service (gate_etp.py);
                # with none anywhere, that gate decides alone.
                backends = Backends.of(r.list(ENDPOINT_SLICES_BY_SERVICE, *key))
                if backends.nodes:
                    nodes &= backends.nodes
            if not nodes:
                continue
            unit_of[key] = unit
            candidates.setdefault(unit, set()).update(nodes)
        units = {}
        for k, c in candidates.items():
            row = r.get(LEASES, k)
            holder = row.holder if row else ""
            if self._leading is not None and self._leading(k):
                holder = me
            units[k] = Unit(k, frozenset(c), holder)
        if self._placed is not None and self._placed[0] == units:
            placement = self._placed[1]
        else:
            placement = place(units.values(), self.rebalance)
            self._placed = (units, placement)
        now = self._clock.monotonic()
        free_for = {}
        handed_to = {}
        for k, u in units.items():
            if u.held:
                self._free_since.pop(k, None)
                self._stood_by[k] = (u.holder, placement.successor.get(k, ""))
                if k in placement.moving:
                    self._moving_to[k] = placement.moving[k]
                else:
                    self._moving_to.pop(k, None)
            else:
                dest = self._moving_to.get(k, "")
                if dest in alive and dest in u.candidates:
                    handed_to[k] = dest
                free_for[k] = now - self._free_since.setdefault(k, now)
                if self._stood_by.get(k, ("", ""))[0] != u.holder:
                    self._stood_by.pop(k, None)  # released, or taken since: nothing to stand by
        for k in [k for k in self._free_since if k not in units]:
            del self._free_since[k]
        for k in [k for k in self._stood_by if k not in units]:
            del self._stood_by[k]
        for k in [k for k in self._moving_to if k not in units]:
            del self._moving_to[k]
        releasing, pending = self._pace(me, units, placement, now)
        return _Pass(placement, units, unit_of, frozenset(releasing), pending, free_for, handed_to)

    def _pace(
        self, me: str, units: dict[str, Unit], placement: Placement, now: float
    ) -> tuple[set[str], int]:
        """The leases this node releases for balance: the ones already on their way, plus the
        next one once ``pace`` has passed since the last."""
        mine = sorted(k for k, dest in placement.moving.items() if units[k].holder == me)
        self._releasing &= set(mine)  # released (or not moving any more): done
        rest = [k for k in mine if k not in self._releasing]
        if rest and now - self._last_release >= self.pace:
            k = rest[0]
            self._releasing.add(k)
            self._last_release = now
            self.moves += 1
            log.info(
                "Handing a lease over to balance the nodes",
                extra=fields(
                    lease=k, to=placement.moving[k], cap=placement.cap, waiting=len(rest) - 1
                ),
            )
        return set(self._releasing), len(mine) - len(self._releasing)
