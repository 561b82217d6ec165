"""The fence gate: a node does not contest a Service it cannot answer for.

It reads ``l2-fence``, where the link fence (agent/fence/links.py) lists interfaces that are down,
without carrier, or back for less than their hold-down, and the responder's verifier
(agent/responder/verifier.py) lists responder entries or interfaces whose datapath could not be
restored. A Service is refused when one of its addresses has no interface left to be answered
on: then the holder releases (the planned handover) and a node that can answer takes over. While
one interface of several is fenced, the Service stays and is answered on the others.

Reasons (``l2-contest``): ``interface-down`` (every interface an address would be announced on
is down, has no carrier or is in its hold-down) and ``datapath-failed`` (the responder entry or
the program could not be restored there).

A down interface is not selected (device selection requires it to be up), so a Service announced
only there has no entries at all; the gate then asks the policies again as if the fenced
interfaces were selected, so that such a node says ``interface-down`` and releases instead of
holding a lease with nothing to answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.announcer.gates import GateView, Refusal
from agent.policy.evaluate import desired_entries, evaluate_policy, selecting_policies
from common.tables.devices import DEVICES, DEVICES_SELECTED
from common.tables.fence import L2_FENCE, Fence, FenceKind
from common.tables.l2_announce import Origin
from common.tables.policies import POLICIES
from common.tables.services import Service
from statedb import Table


class FenceGate:
    name = "fence"
    tables: tuple[Table[Any], ...] = (L2_FENCE, DEVICES, POLICIES)

    def check(
        self,
        service: Service,
        entries: Mapping[tuple[str, str], Origin],
        view: GateView,
    ) -> Refusal | None:
        fences = view.read.all(L2_FENCE)
        if not fences:
            return None  # the usual case: one empty query
        whole: dict[str, Fence] = {}  # interface -> its fence (link, or a detached program)
        single: dict[tuple[str, str], Fence] = {}  # (ip, interface) -> a lost responder entry
        for f in sorted(fences, key=lambda f: f.kind != FenceKind.LINK):  # a link's reason first
            if f.ip:
                single.setdefault((f.ip, f.interface), f)
            else:
                whole.setdefault(f.interface, f)
        pairs = list(entries) or self._entries_if_up(service, view, set(whole))
        by_ip: dict[str, list[str]] = {}
        for ip, iface in pairs:
            by_ip.setdefault(ip, []).append(iface)
        for ip, ifaces in sorted(by_ip.items()):
            blocking: list[Fence] = []
            for iface in sorted(ifaces):
                found = whole.get(iface) or single.get((ip, iface))
                if found is None:
                    break  # this address is answered on ``iface``
                blocking.append(found)
            else:
                return Refusal(
                    blocking[0].reason,
                    f"nowhere to answer for {ip}: " + "; ".join(f.detail for f in blocking),
                )
        return None

    @staticmethod
    def _entries_if_up(service: Service, view: GateView, fenced: set[str]) -> list[tuple[str, str]]:
        """The (IP, interface) pairs the policies would give ``service`` here if the fenced
        interfaces were selected (only asked when it has none as things are)."""
        if not fenced:
            return []
        r = view.read
        devices = [d.name for d in r.list(DEVICES_SELECTED, True)] + sorted(fenced)
        views = [evaluate_policy(p, view.node_labels, devices) for p in r.all(POLICIES)]
        return list(desired_entries(service, selecting_policies(service, views)))


__all__ = ["FenceGate"]
