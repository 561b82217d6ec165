"""The lab's commands (``l2lab up``, ``status``, ``kubectl``, ``agent``, ``api``, ``node``,
``backend``, ``service``, ``logs``, ``down``), registered on cli.py's typer app. Failures print
one ``l2lab: ...`` line (or a few, for what the machine lacks) and exit 1."""

from __future__ import annotations

import enum
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from common.cli import LazyModule
from common.leases import LEASE_PREFIX
from lab import backends
from lab import foreign as foreign_host
from lab.access import errors as _errors
from lab.inventory import (
    CLIENT_IP,
    REFERENCE_TIMERS,
    LabState,
    node_ip,
    node_ip6,
    node_mac,
    node_mgmt_ip,
)
from lab.netns import LabError

if TYPE_CHECKING:
    from lab import lab
else:
    # The lab's machinery (the control plane, the agent's configuration): imported when a
    # command runs, not when `l2lab --help` or the shell's completion lists the commands.
    lab = LazyModule("lab.lab")

_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


class AgentAction(enum.StrEnum):
    stop = "stop"
    kill = "kill"
    start = "start"
    restart = "restart"


class ForeignAction(enum.StrEnum):
    add = "add"
    remove = "remove"


class NodeAction(enum.StrEnum):
    add = "add"


class EndpointCondition(enum.StrEnum):
    ready = "ready"
    not_ready = "not-ready"
    terminating = "terminating"


class TrafficPolicy(enum.StrEnum):
    Cluster = "Cluster"
    Local = "Local"


class ApiFault(enum.StrEnum):
    stall = "stall"
    refuse = "refuse"
    heal = "heal"


# The control plane's components, for `l2lab logs` (`apiserver` is short for kube-apiserver).
def component_logs() -> dict[str, str]:
    from lab.controlplane import COMPONENTS

    return {"apiserver": "kube-apiserver", **{c: c for c in COMPONENTS}}


def _say(text: str) -> None:
    typer.echo(f"l2lab: {text}")


def status_text(state: LabState) -> str:
    """Nodes, agent pids, leases held, announced IPs and health, as plain aligned text."""
    held = lab.leases(state)
    by_node: dict[str, list[str]] = {}
    for lease, holder in sorted(held.items()):
        by_node.setdefault(holder, []).append(lease.removeprefix(LEASE_PREFIX + "-"))
    lines = [
        f"lab {state.name}: {state.nodes} node(s), {state.services} Service(s), timers "
        f"{'/'.join(state.timers)} (lease duration/renew deadline/retry period), {state.phase}",
        f"kube-apiserver: {state.host_url} (host), {state.mgmt_url} (agents); "
        + ", ".join(
            f"{c} pid {p.pid if p.alive() else '- (not running)'}"
            for c, p in state.control_plane.items()
        ),
        "",
    ]
    rows = [("NODE", "ADDRESS", "AGENT", "LEASES", "ANNOUNCED", "HEALTH")]
    for name, ns in state.node_states.items():
        running = ns.agent is not None and ns.agent.alive()
        agent = f"pid {ns.agent.pid}" if running and ns.agent else "not running"
        view = lab.node_view(state, name)
        degraded = [f"{m}: {_short(msg)}" for m, level, msg in view.health if level == "Degraded"]
        if not running:
            health = "-"
        elif degraded:
            health = "Degraded (" + "; ".join(degraded) + ")"
        elif view.health:
            health = "OK"
        else:
            health = "starting"
        if ns.api_fault:
            health += f"; API {ns.api_fault} (l2lab api {name} heal)"
        # A stopped agent's table is what it last wrote, not what the node answers for.
        ips = [f"{ip}@{dev}" for ip, dev in sorted(view.announced.items())] if running else []
        rows.append(
            (name, node_ip(ns.index), agent, _few(by_node.get(name, [])), _few(ips), health)
        )
    rows.append(("client", CLIENT_IP, "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    lines.append("")
    vips = list(state.vips().items())
    vips6 = state.vips6()
    if len(vips) <= 4:
        lines.append(
            "Services: "
            + ", ".join(
                f"default/{s} {' '.join(filter(None, (ip, vips6.get(s))))}" for s, ip in vips
            )
        )
    else:
        lines.append(
            f"Services: default/{vips[0][0]}..{vips[-1][0]}, "
            f"{vips[0][1]}..{vips[-1][1]}"
            + (f" and {vips6[vips[0][0]]}..{vips6[vips[-1][0]]}" if vips6 else "")
            + " (l2lab kubectl -- get service)"
        )
    return "\n".join(lines)


def _few(items: list[str], limit: int = 3) -> str:
    if not items:
        return "-"
    if len(items) <= limit:
        return ", ".join(items)
    return f"{len(items)}: " + ", ".join(items[:limit]) + ", ..."


def _short(message: str, limit: int = 90) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def register(app: typer.Typer, selected: dict[str, str]) -> None:
    def current() -> LabState:
        return lab.require(selected["name"])

    @app.command()
    def up(
        nodes: Annotated[int, typer.Option(help="Number of nodes.")] = 3,
        services: Annotated[int, typer.Option(help="Number of LoadBalancer Services.")] = 1,
        lease_duration: Annotated[
            str, typer.Option(help="l2-announcements-lease-duration of every agent.")
        ] = REFERENCE_TIMERS[0],
        renew_deadline: Annotated[
            str, typer.Option(help="l2-announcements-renew-deadline of every agent.")
        ] = REFERENCE_TIMERS[1],
        retry_period: Annotated[
            str, typer.Option(help="l2-announcements-retry-period of every agent.")
        ] = REFERENCE_TIMERS[2],
        timeout: Annotated[
            float | None,
            typer.Option(help="Seconds to wait for every Service to be announced."),
        ] = None,
        dual_stack: Annotated[
            bool,
            typer.Option(help="IPv6 on the LAN too, and an IPv6 VIP for each Service."),
        ] = True,
        balance: Annotated[
            bool,
            typer.Option(
                help="Agents spread the leases over the nodes (l2-announcements-balance)."
            ),
        ] = True,
        lease_mode: Annotated[
            str,
            typer.Option(
                help="l2-announcements-lease-mode of every agent: per-service or economy."
            ),
        ] = "per-service",
    ) -> None:
        """Bring up a lab: LAN, control plane, nodes with agents, client; wait until announced."""
        with _errors():
            start = time.monotonic()
            # A failed build's message already says the half-built lab stays (lab.up adds it).
            state = lab.up(
                selected["name"],
                nodes=nodes,
                services=services,
                timers=(lease_duration, renew_deadline, retry_period),
                timeout=timeout,
                say=_say,
                dual_stack=dual_stack,
                balance=balance,
                lease_mode=lease_mode,
            )
            _say(f"lab {state.name} is up ({time.monotonic() - start:.1f}s)")
            typer.echo("")
            typer.echo(status_text(state))

    @app.command()
    def status() -> None:
        """Nodes, agent pids, leases held per node, announced IPs and each agent's health."""
        with _errors():
            typer.echo(status_text(current()))

    @app.command(context_settings=_EXTRA)
    def kubectl(ctx: typer.Context) -> None:
        """Run the built kubectl against the lab as its admin: l2lab kubectl -- get lease -A."""
        with _errors():
            state = current()
            kubectl = str(state.kubectl_path)
            sys.stdout.flush()
            os.execv(kubectl, [kubectl, f"--kubeconfig={state.admin_kubeconfig}", *ctx.args])

    @app.command()
    def agent(
        action: Annotated[AgentAction, typer.Argument(help="stop (SIGTERM), kill, start, restart")],
        node: Annotated[str, typer.Argument(help="node1..nodeN")],
    ) -> None:
        """Stop (SIGTERM), kill (SIGKILL), start or restart a node's agent."""
        with _errors():
            state = current()
            if action in (AgentAction.stop, AgentAction.restart, AgentAction.kill):
                sig = signal.SIGKILL if action is AgentAction.kill else signal.SIGTERM
                t = time.monotonic()
                if not lab.signal_agent(state, node, sig):
                    raise LabError(f"the agent of {node} did not exit within 5s of {sig.name}")
                _say(f"{node}: agent exited {time.monotonic() - t:.2f}s after {sig.name}")
            if action in (AgentAction.start, AgentAction.restart):
                lab.start_agent(state, node, say=_say)

    @app.command()
    def api(
        node: Annotated[str, typer.Argument(help="node1..nodeN, or all")],
        fault: Annotated[
            ApiFault,
            typer.Argument(
                help="stall: packets dropped both ways (connections hang); refuse: TCP resets; "
                "heal: the rules removed"
            ),
        ],
    ) -> None:
        """Stall or refuse a node's traffic with kube-apiserver, or heal it (nftables rules in
        the node's network namespace)."""
        with _errors():
            state = current()
            nodes = lab.api_fault(state, node, fault.value)
            done = {
                "stall": "stalled (packets dropped both ways)",
                "refuse": "refused (TCP resets)",
                "heal": "healed",
            }[fault.value]
            _say(f"{', '.join(nodes)}: traffic with kube-apiserver {done}")

    @app.command()
    def foreign(
        action: Annotated[
            ForeignAction,
            typer.Argument(
                help="add: a host on the LAN with IP as a static address; remove: the address, "
                "or without one the host"
            ),
        ],
        address: Annotated[
            str | None, typer.Argument(help="198.51.100.x, e.g. a Service's VIP")
        ] = None,
    ) -> None:
        """A foreign host on the LAN holding an address statically (a VIP: a conflict the agents
        must report), or its removal."""
        with _errors():
            state = current()
            if action is ForeignAction.add:
                if address is None:
                    raise LabError(
                        "foreign add needs an address, e.g. l2lab foreign add 198.51.100.101"
                    )
                _say(foreign_host.add(state, address))
            else:
                gone = foreign_host.remove(state, address)
                _say(
                    gone or f"no foreign host {'held ' + address if address else 'was'} on the LAN"
                )

    @app.command()
    def node(
        action: Annotated[
            NodeAction,
            typer.Argument(help="add: node N+1 joins the running lab, built as `up` builds one"),
        ],
    ) -> None:
        """Add a node to the running lab: its namespace, Node object, sandbox, backend and agent;
        the agents then move its share of the Services to it."""
        with _errors():
            state = current()
            added = lab.add_node(state.name, say=_say)
            state = current()
            ns = state.node_states[added]
            agent = ns.agent.pid if ns.agent is not None else "-"
            _say(
                f"added {added}: {node_ip(ns.index)}"
                + (f", {node_ip6(ns.index)}" if state.dual_stack else "")
                + f" (MAC {node_mac(ns.index)}), management {node_mgmt_ip(ns.index)}, "
                f"namespace {ns.netns}, agent pid {agent}; the lab has {state.nodes} nodes"
            )

    @app.command()
    def backend(
        service: Annotated[str, typer.Argument(help="service-1..service-N")],
        nodes: Annotated[
            list[str] | None,
            typer.Argument(help="node1..nodeN, one endpoint on each; none: no endpoints at all"),
        ] = None,
        condition: Annotated[
            EndpointCondition,
            typer.Option(help="ready, not-ready, or terminating (and still serving)"),
        ] = EndpointCondition.ready,
        node_name: Annotated[
            bool, typer.Option("--node-name/--no-node-name", help="Set each endpoint's nodeName.")
        ] = True,
    ) -> None:
        """Place a Service's backends: its EndpointSlice, with one endpoint on each node given."""
        with _errors():
            line = backends.set_backends(
                current(), service, nodes or [], condition=condition.value, node_name=node_name
            )
            _say(line)

    @app.command()
    def service(
        service: Annotated[str, typer.Argument(help="service-1..service-N")],
        etp: Annotated[
            TrafficPolicy | None,
            typer.Option("--etp", case_sensitive=False, help="spec.externalTrafficPolicy"),
        ] = None,
        ip: Annotated[
            str | None,
            typer.Option(help="Its IPv4 VIP: another Service's, to share it (one MAC answers)."),
        ] = None,
    ) -> None:
        """Change a Service: its external traffic policy (Local: announced only from a node with
        a ready endpoint), or its VIP (shared with another Service)."""
        with _errors():
            if etp is None and ip is None:
                raise LabError("service needs --etp and/or --ip, e.g. --ip 198.51.100.101")
            if etp is not None:
                _say(backends.set_traffic_policy(current(), service, etp.value))
            if ip is not None:
                _say(lab.set_service_ip(current(), service, ip))

    @app.command()
    def logs(
        node: Annotated[
            str,
            typer.Argument(
                help="node1..nodeN, or apiserver (kube-apiserver), etcd, kube-controller-manager"
            ),
        ],
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    ) -> None:
        """Print a node's agent log (or a control plane component's)."""
        with _errors():
            state = current()
            components = component_logs()
            if node in components:
                path = state.control_plane_dir / f"{components[node]}.log"
            else:
                lab._node(state, node)
                path = state.agent_log(node)
            _print_file(path, follow, typer.echo)

    @app.command()
    def down() -> None:
        """Remove every namespace, process, mount, pin and file of the lab (also after a crash)."""
        with _errors():
            removed = lab.down(selected["name"], say=_say)
            if not removed:
                _say(f"no lab named {selected['name']!r} was up; nothing to remove")


def _print_file(path: os.PathLike[str], follow: bool, echo: Callable[..., None]) -> None:
    try:
        f = open(path, errors="replace")  # noqa: SIM115
    except OSError as e:
        raise LabError(f"{path}: {e.strerror}") from None
    with f:
        echo(f.read(), nl=False)
        while follow:
            chunk = f.read()
            if chunk:
                echo(chunk, nl=False)
            else:
                time.sleep(0.2)
