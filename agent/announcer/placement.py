"""Balanced, sticky placement of Service leases over the nodes: the pure core.

Left to first come, first served, every lease goes to the node whose agent started first, and
that one node carries all north/south traffic. Here every node computes the same placement from
the same inputs (the Services, which alive nodes may announce each one, and who holds each lease
now) and contests only the leases placed on it:

- **Rendezvous hashing with bounded load.** Each unit (a Service, or a group sharing an address,
  placement_groups.py) ranks its candidates by a hash of (unit, node); it goes to the first
  one in that order holding fewer than ``target = ceil(S/N)`` units (S units, N candidate
  nodes), else fewer than ``cap = target + 1``, else its first. Hashing spreads the units with
  no coordination; the bound keeps an unlucky node from collecting more than its share.
- **Sticky.** A lease held by a live candidate stays with it and counts toward its load, up to
  ``cap``: nothing moves while the cluster is steady, and a lease never moves because another
  one was added. Only a holder over ``cap`` (a node that was alone when the others were down)
  gives units up, down to ``target`` when that is what it takes for every node to get at least
  ``target - 1`` (a node that rejoins gets a full share, not what the slack of one leaves it):
  the ones it ranks lowest ``move`` to the node placement picks for them, by
  the planned handover (the holder withdraws and releases, the destination takes it), paced by
  the gate, never two holders at once. Without rebalancing, held leases never move.
- **A successor stands by** for every held unit: the node it would go to if its holder
  disappeared (placement computed without that node). It campaigns while the holder holds, so
  when the holder stops renewing, a takeover is as quick as with everyone standing by, and the
  units of a dead node spread over the others by the same rule instead of by who is fastest.

Pure: no I/O, no clock; the gate (placement_gate.py) feeds it from the tables and adds time.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache


@dataclass(frozen=True)
class Unit:
    """One lease to place."""

    key: str
    """The lease's name: unique, and the same on every node."""
    candidates: frozenset[str]
    """The alive nodes that would announce it (a policy selects it for them)."""
    holder: str = ""
    """The lease's holder as last seen, empty when free."""

    @property
    def held(self) -> bool:
        """Held by a node that can keep it: alive and still a candidate."""
        return bool(self.holder) and self.holder in self.candidates


@dataclass(frozen=True)
class Placement:
    owner: Mapping[str, str] = field(default_factory=dict)
    """Unit -> the node that should hold it: its live holder, or where it goes."""
    moving: Mapping[str, str] = field(default_factory=dict)
    """Units whose live holder holds more than ``cap`` -> the node they move to."""
    successor: Mapping[str, str] = field(default_factory=dict)
    """Held units that stay -> the node that takes them if their holder disappears."""
    target: int = 0
    cap: int = 0

    def loads(self) -> Counter[str]:
        """Units per node once the moves are done."""
        return Counter(self.owner.values())


@lru_cache(maxsize=1 << 16)
def score(key: str, node: str) -> int:
    """The rendezvous weight of ``node`` for ``key``: the same on every node and every run
    (a keyed hash, not Python's per-process ``hash``)."""
    digest = hashlib.blake2b(f"{key}\0{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranking(key: str, candidates: Iterable[str]) -> list[str]:
    """``candidates`` in ``key``'s order of preference."""
    return sorted(candidates, key=lambda n: (-score(key, n), n))


def place(units: Iterable[Unit], rebalance: bool = True) -> Placement:
    """Where each unit goes. The same inputs give the same answer on every node, whatever the
    order of ``units``. ``rebalance`` False: held units never move (no cap on holders)."""
    ordered = sorted(units, key=lambda u: u.key)
    ranks = {u.key: ranking(u.key, u.candidates) for u in ordered}
    owner, moving, target, cap = _assign(ordered, ranks, "", rebalance)
    successor: dict[str, str] = {}
    holders = sorted({u.holder for u in ordered if u.held and moving.get(u.key) is None})
    for gone in holders:
        # Each holder's units, placed as they would be without it; the moving ones have a
        # destination already, which stands by for them.
        others, _, _, _ = _assign(ordered, ranks, gone, rebalance)
        for u in ordered:
            if u.held and u.holder == gone and u.key not in moving and u.key in others:
                successor[u.key] = others[u.key]
    return Placement(owner, moving, successor, target, cap)


def _assign(
    units: Sequence[Unit], ranks: Mapping[str, list[str]], gone: str, rebalance: bool
) -> tuple[dict[str, str], dict[str, str], int, int]:
    """(owner, moving, target, cap) with node ``gone`` (if any) taken away."""
    owner, moving, target, cap, short = _assign_within(units, ranks, gone, rebalance, even=False)
    if short and rebalance:
        # Holders keeping one over the target would leave a node two or more short of it.
        owner, moving, target, cap, _ = _assign_within(units, ranks, gone, rebalance, even=True)
    return owner, moving, target, cap


def _assign_within(
    units: Sequence[Unit],
    ranks: Mapping[str, list[str]],
    gone: str,
    rebalance: bool,
    even: bool,
) -> tuple[dict[str, str], dict[str, str], int, int, bool]:
    """``_assign`` with holders keeping up to ``cap``, or with ``even`` only their even share
    (``floor(S/N)``); the last item says whether some node ends up with fewer than
    ``target - 1`` units."""
    nodes = {n for u in units for n in u.candidates if n != gone}
    placeable = [u for u in units if any(n != gone for n in u.candidates)]
    if not nodes:
        return {}, {}, 0, 0, False
    target = math.ceil(len(placeable) / len(nodes))
    cap = target + 1
    keep = len(placeable) // len(nodes) if even else cap
    ideal = _fresh(placeable, ranks, gone, target)
    owner: dict[str, str] = {}
    moving: dict[str, str] = {}
    load: Counter[str] = Counter()
    held: dict[str, list[Unit]] = {}
    for u in placeable:
        if u.held and u.holder != gone:
            held.setdefault(u.holder, []).append(u)
    for holder, mine in held.items():
        # A holder over the cap keeps the units the ideal placement gives it, then those it
        # ranks highest (every node picks the same ones); the rest are placed below like free
        # units, away from it since it is full.
        mine.sort(key=lambda u: (ideal[u.key] != holder, -score(u.key, holder), u.key))
        for u in mine[: keep if rebalance else len(mine)]:
            owner[u.key] = holder
            load[holder] += 1
    for u in placeable:
        if u.key in owner:
            continue
        ranked = [n for n in ranks[u.key] if n != gone]
        # A free unit goes where the ideal placement puts it, if there is room: its place does
        # not depend on which others are held yet, so nodes taking their leases one by one at
        # start-up do not move each other's. Else a node two short of the target (one that
        # joined); then a holder that has room keeps it (a move only where one is needed);
        # then by rank.
        free = not u.held or u.holder == gone
        pick = ideal[u.key] if free and load[ideal[u.key]] < target else None
        if pick is None:
            pick = next((n for n in ranked if load[n] < target - 1), None)
        if pick is None and u.held and u.holder != gone and load[u.holder] < target:
            pick = u.holder
        if pick is None:
            pick = next((n for n in ranked if load[n] < target), None)
        if pick is None:
            pick = next((n for n in ranked if load[n] < cap), None)
        if pick is None:
            # Every candidate is full (candidates restricted by policies): a holder keeps it
            # rather than moving it to a node just as full.
            pick = u.holder if u.held and u.holder != gone else ranked[0]
        owner[u.key] = pick
        load[pick] += 1
        if u.held and u.holder != gone and pick != u.holder:
            moving[u.key] = pick
    short = any(load[n] < target - 1 for n in nodes)
    return owner, moving, target, cap, short


def _fresh(
    units: Sequence[Unit], ranks: Mapping[str, list[str]], gone: str, target: int
) -> dict[str, str]:
    """The ideal placement: every unit free, each to the first node in its ranking with fewer
    than ``target``, in key order."""
    load: Counter[str] = Counter()
    out: dict[str, str] = {}
    for u in units:
        ranked = [n for n in ranks[u.key] if n != gone]
        pick = next((n for n in ranked if load[n] < target), ranked[0])
        out[u.key] = pick
        load[pick] += 1
    return out
