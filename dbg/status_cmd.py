"""``l2dbg status``: one screen on how this node's agent is doing.

Modules' health, the leases this node holds (each with the number of (IP, interface) pairs it
announces, or a plain "nothing announced": holding a lease is not announcing) and follows, the IPs
it announces and their reconcile status, the selected devices, and two prerequisites Cilium
only documents: a service proxy on the node (without one the VIP answers ARP but nothing forwards
its traffic) and l2 announcements being enabled.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from common.leases import is_service_lease, lease_name
from common.tables import CONFIG, DEVICES, HEALTH, L2_ANNOUNCE, LEASES
from dbg import statedb_ops
from dbg.errors import DbgError, report
from dbg.options import state_dir_of

SERVICE_PROXIES = ("kube-proxy", "cilium-agent", "kube-router", "antrea-agent")


def service_proxy(proc: Path = Path("/proc")) -> str:
    """The name of a service proxy process running on this node, or ""."""
    try:
        pids = [p for p in proc.iterdir() if p.name.isdigit()]
    except OSError:
        return ""
    for pid in pids:
        try:
            comm = (pid / "comm").read_text().strip()
        except OSError:
            continue
        if comm in SERVICE_PROXIES:
            return comm
    return ""


def render(state_dir: Path, proxy: str) -> str:
    with statedb_ops.open_db(state_dir) as ro, statedb_ops.snapshot(ro) as snap:
        config = {c.key: c.value for c in snap.rows(CONFIG)} if snap.has_table(CONFIG) else {}
        health = snap.rows(HEALTH) if snap.has_table(HEALTH) else []
        leases = snap.rows(LEASES) if snap.has_table(LEASES) else []
        leases = [x for x in leases if is_service_lease(x.name)]  # not the nodes' heartbeats
        entries = snap.rows(L2_ANNOUNCE)
        devices = [d.name for d in snap.rows(DEVICES) if d.selected]
    node = config.get("node-name", "?")
    # The agent's own count and the sizing rule's need (agent/api_usage.py), as its health row.
    usage = next((h.message for h in health if h.module == "api-usage"), "")
    held = [x.name for x in leases if x.holder == node]
    pairs: dict[str, int] = {}
    for e in entries:
        for o in e.origins:
            name = lease_name(o.namespace, o.name)
            pairs[name] = pairs.get(name, 0) + 1
    width = max((len(n) for n in held), default=0)
    followed = [x for x in leases if x.holder and x.holder != node]
    out = [
        f"Node:                 {node}",
        f"L2 announcements:     {config.get('enable-l2-announcements', '?')}",
        f"Service proxy:        {proxy or 'none found (kube-proxy or a replacement must forward VIP traffic)'}",
        f"Selected devices:     {', '.join(devices) or 'none'}",
        f"Leases held:          {len(held)}" + "".join(
            f"\n  {n:<{width}}   " + (
                f"announcing {pairs[n]} (IP, interface) pair(s)" if pairs.get(n)
                else "nothing announced (the l2-announcer module below says why)"
            )
            for n in held
        ),
        f"Leases followed:      {len(followed)}",
        f"API requests:         {usage or 'not reported (an agent older than this l2dbg?)'}",
        f"Announced IPs:        {len({e.ip for e in entries})} on {len(entries)} (IP, interface) pair(s)",
    ]  # fmt: skip
    for e in entries:
        state = e.status.kind.value + (f": {e.status.error}" if e.status.error else "")
        out.append(f"  {e.ip:<39} {e.network_interface:<15} {state}")
    out.append("Modules:")
    for h in health:
        out.append(f"  {h.module:<48} {h.level:<9} {h.message}")
    return "\n".join(out) + "\n"


app = typer.Typer(rich_markup_mode=None, add_completion=False)


@app.command("status")
def status(
    ctx: typer.Context,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Directory holding statedb.sqlite.")
    ] = None,
) -> None:
    """One screen: modules' health, leases held and followed, announced IPs, prerequisites."""
    try:
        sys.stdout.write(render(state_dir_of(ctx), service_proxy()))
    except DbgError as e:
        report(e)
        raise typer.Exit(1) from None
