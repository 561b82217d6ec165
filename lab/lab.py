"""The lab: a LAN of network namespaces with nodes running the real agent, a client, and the API
server, on one machine. ``l2lab`` (cli.py) is a thin layer over the functions here.

Picture (default name ``l2lab``, 3 nodes)::

    host ── l2lab-api (203.0.113.2/30) ─┐
                                        │ veth
    ┌ l2lab-lan ────────────────────────┴─────────────────────────────────────┐
    │ api0 203.0.113.1/30   br0 198.51.100.1/24  (API server :6443 on both)    │
    │        ports: node1   node2   node3   client                            │
    └───────────────┬───────┬───────┬───────┬─────────────────────────────────┘
          eth0 .11 ─┘  .12 ─┘  .13 ─┘  .2 ─┘  (each in its own namespace)
    l2lab-node<i>: eth0 198.51.100.(10+i)/24, default via .1, every VIP on lo (arp_ignore=1),
                   sandbox (own bpffs at /sys/fs/bpf, state at /run/l2announcer),
                   l2agent + HTTP responder :80
    l2lab-client:  eth0 198.51.100.2/24 (arping, curl)

Addresses are documentation ranges only (RFC 5737) and nothing is forwarded or routed off the
machine: the LAN namespace does not forward, and the host only has its /30 towards it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.config import Config, ConfigError, clamp_lease_timings, parse_value
from agent.durations import parse_duration
from agent.leases import record
from lab import netns
from lab.kubeapi.auth import service_account_username
from lab.kubeapi.fault_spec import node_bound_name
from lab.netns import LabError
from lab.state import (
    API_LAN_IP,
    API_PORT,
    CLIENT_IP,
    CLIENT_MAC,
    HOST_LINK_PREFIX,
    MAX_NODES,
    MAX_SERVICES,
    REFERENCE_TIMERS,
    SERVICE_ACCOUNT,
    SWITCH_MAC,
    LabState,
    NodeState,
    Proc,
    check_name,
    lab_dir,
    node_ip,
    node_mac,
    proc_of,
)

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent
RUN_L2ANNOUNCER = Path("/run/l2announcer")
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
TOOLS = ("ip", "nsenter", "unshare", "mount", "sysctl", "kubectl", "bpftool", "arping", "curl")


def policy1() -> dict[str, Any]:
    """The seed's example policy, unchanged but for what the lab's Services carry (color: blue)."""
    return {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": "policy1"},
        "spec": {
            "serviceSelector": {"matchLabels": {"color": "blue"}},
            "nodeSelector": {
                "matchExpressions": [
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}
                ]
            },
            "interfaces": ["^eth[0-9]+"],
            "externalIPs": True,
            "loadBalancerIPs": True,
        },
    }


def lease_name(service: str, namespace: str = "default") -> str:
    return record.lease_name(namespace, service)


# -- checks -------------------------------------------------------------------------------------


def missing_requirements() -> list[str]:
    """What this machine lacks for a lab, one line each (empty when it has everything)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, bpffs mounts and BPF need it): run as root")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            missing.append(f"{tool}: not on PATH (make bootstrap installs it)")
    if not (VENV_BIN / "l2agent").exists():
        missing.append(f"l2agent: not in {VENV_BIN} (make bootstrap installs the project)")
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not build.exists():
        missing.append(f"kernel headers: {build} is missing (bcc compiles the datapath against it)")
    if not Path("/proc/self/ns/net").exists():
        missing.append("network namespaces: this kernel has none")
    return missing


TIMER_FLAGS = (
    ("--lease-duration", "l2-announcements-lease-duration"),
    ("--renew-deadline", "l2-announcements-renew-deadline"),
    ("--retry-period", "l2-announcements-retry-period"),
)


def validate_timers(lease: str, renew: str, retry: str) -> tuple[str, str, str]:
    """Refuse exactly the timer values the agent would refuse (it clamps wrong relations itself)."""
    for (flag, key), value in zip(TIMER_FLAGS, (lease, renew, retry), strict=True):
        try:
            parse_value(key, value)
        except ConfigError as e:
            raise LabError(f"{flag}: {e}") from None
    return lease, renew, retry


# -- up -----------------------------------------------------------------------------------------


def existing_namespaces(name: str, present: list[str] | None = None) -> list[str]:
    """The lab's namespaces among `present` (default: the host's, listed now)."""
    members = ("lan", "client")
    return [
        ns
        for ns in (netns.list_netns() if present is None else present)
        if ns.startswith(f"{name}-")
        and (ns[len(name) + 1 :] in members or ns[len(name) + 1 :].removeprefix("node").isdigit())
    ]


def _free_host_link_net() -> int:
    used = {
        int(a.rsplit(".", 1)[1]) // 4
        for a in netns.host_ipv4_addresses()
        if a.startswith(f"{HOST_LINK_PREFIX}.")
    }
    for k in range(64):
        if k not in used:
            return k
    raise LabError(f"no free /30 left in {HOST_LINK_PREFIX}.0/24 for another lab's host link")


def up(
    name: str,
    nodes: int = 3,
    services: int = 1,
    timers: tuple[str, str, str] = REFERENCE_TIMERS,
    timeout: float | None = None,
    say: Callable[[str], None] = print,
) -> LabState:
    """Bring a lab up; returns once every Service is announced. Refuses if one is up already."""
    check_name(name)
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes {nodes}: the lab has room for 1 to {MAX_NODES} nodes")
    if not 0 <= services <= MAX_SERVICES:
        raise LabError(f"--services {services}: the lab has room for 0 to {MAX_SERVICES} VIPs")
    validate_timers(*timers)
    missing = missing_requirements()
    if missing:
        raise LabError("this machine lacks what the lab needs:\n  " + "\n  ".join(missing))
    if LabState.load(name) is not None or existing_namespaces(name):
        raise LabError(
            f"a lab named {name!r} is already up (see `l2lab status`); "
            "take it down first with `l2lab down`"
        )
    state = LabState(name=name, nodes=nodes, services=services, timers=timers)
    state.host_link_net = _free_host_link_net()
    if lab_dir(name).exists():
        shutil.rmtree(lab_dir(name))
    state.save()
    try:
        _build(state, say)
        if timeout is None:
            timeout = 60.0 + 2 * parse_duration(timers[0])
        say(f"waiting for {services} Service(s) to be announced")
        wait_announced(state, timeout)
        state.phase = "up"
        state.save()
    except LabError as e:
        state.phase = "failed"
        state.save()
        raise LabError(
            f"{e}\nThe half-built lab stays for inspection (l2lab status, l2lab logs <node>); "
            "l2lab down removes it."
        ) from e
    except BaseException:
        state.phase = "failed"
        state.save()
        raise
    return state


def _build(state: LabState, say: Callable[[str], None]) -> None:
    members_text = f"{state.lan_netns}, {state.name}-node1..{state.nodes}, {state.client_netns}"
    say(f"creating namespaces {members_text}")
    lan = state.lan_netns
    state.namespaces.append(lan)
    state.save()
    netns.add_netns(lan)
    netns.ip("link", "add", "br0", "address", SWITCH_MAC, "type", "bridge", netns=lan)
    netns.ip("addr", "add", f"{API_LAN_IP}/24", "dev", "br0", netns=lan)
    netns.ip("link", "set", "br0", "up", netns=lan)

    # The host link: the host reaches the API server (kubectl, l2lab api) without a route into
    # the LAN.
    state.host_links.append(state.host_link)
    state.save()
    netns.ip("link", "add", state.host_link, "type", "veth", "peer", "name", "api0", "netns", lan)
    with contextlib.suppress(OSError):
        Path(f"/proc/sys/net/ipv6/conf/{state.host_link}/disable_ipv6").write_text("1")
    netns.ip("addr", "add", f"{state.host_ip}/30", "dev", state.host_link)
    netns.ip("link", "set", state.host_link, "up")
    netns.ip("addr", "add", f"{state.api_host_ip}/30", "dev", "api0", netns=lan)
    netns.ip("link", "set", "api0", "up", netns=lan)

    members = [(n, node_ip(i), node_mac(i)) for i, n in enumerate(state.node_names(), 1)]
    members.append(("client", CLIENT_IP, CLIENT_MAC))
    for member, address, mac in members:
        ns = state.netns_of(member)
        state.namespaces.append(ns)
        state.save()
        netns.add_netns(ns)
        veth = ("link", "add", member, "type", "veth", "peer", "name", "eth0", "netns", ns)
        netns.ip(*veth, netns=lan)
        netns.ip("link", "set", member, "master", "br0", "up", netns=lan)
        netns.ip("link", "set", "eth0", "address", mac, netns=ns)
        netns.ip("addr", "add", f"{address}/24", "dev", "eth0", netns=ns)
        netns.ip("link", "set", "eth0", "up", netns=ns)
        if member == "client":
            continue
        # A node's uplink has a default route (device detection selects a veth only with one),
        # and carries every VIP locally, like kube-proxy; the kernel must then never answer ARP
        # for them itself (arp_ignore=1: only for addresses of the asking interface) nor use one
        # as the source of its own ARP requests (arp_announce=2). Only the BPF program answers.
        netns.ip("route", "add", "default", "via", API_LAN_IP, "dev", "eth0", netns=ns)
        for key in ("all", "eth0"):
            netns.sysctl(ns, f"net.ipv4.conf.{key}.arp_ignore", "1")
            netns.sysctl(ns, f"net.ipv4.conf.{key}.arp_announce", "2")
        for address_ in state.vips().values():
            netns.ip("addr", "add", f"{address_}/32", "dev", "lo", netns=ns)

    for node in state.node_names():
        state.node_states[node] = NodeState(
            name=node, index=int(node[4:]), netns=state.netns_of(node)
        )
        state.node_state_dir(node).mkdir(parents=True, exist_ok=True)
    if not RUN_L2ANNOUNCER.exists():
        RUN_L2ANNOUNCER.mkdir(mode=0o755)
        state.created_run_l2announcer = True
    state.save()

    say(f"starting the API server on {state.lan_url} (nodes) and {state.host_url} (host)")
    _start_apiserver(state)
    say("applying deploy/ (CRD, ServiceAccount, RBAC), policy1, nodes and Services")
    _apply_objects(state)
    for node in state.node_names():
        member_state = state.node_states[node]
        sandbox_log = state.dir / node / "sandbox.log"
        member_state.sandbox = proc_of(
            netns.start_sandbox(member_state.netns, state.node_state_dir(node), sandbox_log)
        )
        state.save()
        _start_http(state, member_state)
        start_agent(state, node, say)


def _start_apiserver(state: LabState) -> None:
    args = [
        *netns.enter_args(None, state.lan_netns),
        sys.executable,
        "-m",
        "lab.labserver",
        str(state.dir),
        f"--lan-ip={API_LAN_IP}",
        f"--host-ip={state.api_host_ip}",
        f"--port={API_PORT}",
        f"--service-account={SERVICE_ACCOUNT[0]}/{SERVICE_ACCOUNT[1]}",
        *[f"--node={n}" for n in state.node_names()],
    ]
    proc = netns.spawn(args, state.dir / "apiserver.log", env=_env(cwd_on_path=True))
    state.apiserver = proc_of(proc.pid)
    state.save()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(
                "the API server exited:\n" + (state.dir / "apiserver.log").read_text()[-2000:]
            )
        if (state.dir / "apiserver.ready").exists() and _connects(state.api_host_ip, API_PORT):
            return
        time.sleep(0.05)
    raise LabError("the API server did not come up within 30s (see apiserver.log)")


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _env(cwd_on_path: bool = False) -> dict[str, str]:
    """The lab processes' environment: no L2ANNOUNCER_* leaking in, the venv's tools first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2ANNOUNCER_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    if cwd_on_path:
        env["PYTHONPATH"] = str(REPO)
    return env


def kubectl(state: LabState, *args: str, check: bool = True) -> str:
    return netns.run(
        ["kubectl", f"--kubeconfig={state.admin_kubeconfig}", *args], check=check, timeout=60
    )


def _apply_objects(state: LabState) -> None:
    files = ["-f", str(DEPLOY / "crds")]
    for path in sorted(DEPLOY.glob("*.yaml")):
        kinds = {d.get("kind") for d in yaml.safe_load_all(path.read_text()) if d}
        if kinds and kinds <= RBAC_KINDS:
            files += ["-f", str(path)]
    if len(files) < 4:
        raise LabError(f"{DEPLOY}: the ServiceAccount and RBAC manifests are missing")
    kubectl(state, "apply", *files)
    policy = state.dir / "policy1.yaml"
    policy.write_text(yaml.safe_dump(policy1(), sort_keys=False))
    kubectl(state, "apply", "-f", str(policy))
    objects: list[dict[str, Any]] = []
    for node in state.node_names():
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node,
                    "labels": {
                        "kubernetes.io/hostname": node,
                        "kubernetes.io/os": "linux",
                        "node-role.kubernetes.io/worker": "",
                    },
                },
            }
        )
    for service in state.vips():
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": "default", "labels": {"color": "blue"}},
                "spec": {
                    "type": "LoadBalancer",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                },
            }
        )
    manifest = state.dir / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    kubectl(state, "apply", "-f", str(manifest))
    for node in state.node_names():
        # What a kubelet would report: the node's address and Ready (nothing reads Ready, but
        # `kubectl get nodes -o wide` then looks like a cluster's).
        status = {
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": node_ip(int(node[4:]))},
                    {"type": "Hostname", "address": node},
                ],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            }
        }
        kubectl(state, "patch", "node", node, "--subresource=status", "--type=merge",
                "-p", json.dumps(status))  # fmt: skip
    for service, address in state.vips().items():
        kubectl(
            state,
            "patch",
            "service",
            service,
            "--subresource=status",
            "--type=merge",
            "-p",
            f'{{"status":{{"loadBalancer":{{"ingress":[{{"ip":"{address}"}}]}}}}}}',
        )


def _start_http(state: LabState, node: NodeState) -> None:
    assert node.sandbox is not None
    proc = netns.spawn(
        [
            *netns.enter_args(node.sandbox.pid, node.netns),
            *(sys.executable, "-m", "lab.responder", node.name),
        ],
        state.dir / node.name / "http.log",
        env=_env(cwd_on_path=True),
    )
    node.http = proc_of(proc.pid)
    state.save()


METRICS_PORT = 9962  # the reference agent's Prometheus port


def agent_args(state: LabState, node: str) -> list[str]:
    lease, renew, retry = state.timers
    # The seed's sizing: services / renew deadline requests per second, with room to spare; the
    # renew deadline the agent will use (it clamps wrong values, e.g. 0, as the reference).
    effective, _ = clamp_lease_timings(
        Config(
            l2_announcements_lease_duration=parse_duration(lease),
            l2_announcements_renew_deadline=parse_duration(renew),
            l2_announcements_retry_period=parse_duration(retry),
        )
    )
    qps = max(5, math.ceil(1.5 * state.services / effective.l2_announcements_renew_deadline))
    return [
        str(VENV_BIN / "l2agent"),
        "--enable-l2-announcements",
        f"--kubeconfig={state.node_kubeconfig(node)}",
        f"--node-name={node}",
        f"--l2-announcements-lease-duration={lease}",
        f"--l2-announcements-renew-deadline={renew}",
        f"--l2-announcements-retry-period={retry}",
        f"--k8s-client-qps={qps}",
        f"--k8s-client-burst={2 * qps}",
        # Each node is its own network namespace: the same port on every node, as a DaemonSet.
        f"--prometheus-serve-addr=:{METRICS_PORT}",
    ]


def start_agent(state: LabState, node: str, say: Callable[[str], None] = print) -> Proc:
    ns = _node(state, node)
    if ns.agent is not None and ns.agent.alive():
        raise LabError(f"the agent of {node} is already running (pid {ns.agent.pid})")
    if ns.sandbox is None or not ns.sandbox.alive():
        raise LabError(f"{node}'s sandbox is gone; the lab is broken: `l2lab down` and up again")
    log = state.agent_log(node)
    with log.open("ab") as out:
        out.write(f"--- l2lab: agent started at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    proc = netns.spawn(
        [*netns.enter_args(ns.sandbox.pid, ns.netns), *agent_args(state, node)], log, env=_env()
    )
    ns.agent = proc_of(proc.pid)
    state.save()
    say(f"started the agent of {node} (pid {proc.pid})")
    return ns.agent


def signal_agent(state: LabState, node: str, sig: signal.Signals, wait: float = 5.0) -> bool:
    """Send `sig` to the node's agent; True once it has exited (within `wait` s)."""
    ns = _node(state, node)
    if ns.agent is None or not ns.agent.alive():
        raise LabError(f"the agent of {node} is not running")
    os.kill(ns.agent.pid, sig)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not ns.agent.alive():
            return True
        time.sleep(0.02)
    return False


def _node(state: LabState, node: str) -> NodeState:
    if node not in state.node_states:
        known = ", ".join(state.node_states) or "none"
        raise LabError(f"no node {node!r} in lab {state.name!r} (nodes: {known})")
    return state.node_states[node]


# -- observing ----------------------------------------------------------------------------------


def leases(state: LabState) -> dict[str, str]:
    """lease name -> holder, for the lab's election leases."""
    out = kubectl(state, "-n", "kube-system", "get", "lease", "-o", "json", check=False)
    try:
        items = yaml.safe_load(out).get("items", [])
    except (AttributeError, yaml.YAMLError):
        return {}
    return {
        i["metadata"]["name"]: (i.get("spec") or {}).get("holderIdentity") or ""
        for i in items
        if i["metadata"]["name"].startswith(record.LEASE_PREFIX + "-")
    }


@dataclass(frozen=True)
class NodeView:
    announced: dict[str, str]  # ip -> interface (status Done only)
    pending: list[str]
    health: list[tuple[str, str, str]]  # module, level, message


def node_view(state: LabState, node: str) -> NodeView:
    from statedb import ReadOnlyDatabase
    from statedb.status import StatusKind
    from statedb.tables import L2_ANNOUNCE
    from statedb.tables.health import HEALTH

    path = state.node_state_dir(node) / "statedb.sqlite"
    announced: dict[str, str] = {}
    pending: list[str] = []
    health: list[tuple[str, str, str]] = []
    if not path.exists():
        return NodeView(announced, pending, health)
    try:
        with ReadOnlyDatabase.open(path) as ro, ro.snapshot() as snap:
            for e in snap.rows(L2_ANNOUNCE):
                if e.status.kind is StatusKind.DONE:
                    announced[e.ip] = e.network_interface
                else:
                    pending.append(e.ip)
            health = [(h.module, h.level, h.message) for h in snap.rows(HEALTH)]
    except Exception:
        pass
    return NodeView(announced, pending, health)


def _view_of(state: LabState, node: str, views: dict[str, NodeView]) -> NodeView:
    """`node`'s view, read at most once into `views` (one SQLite snapshot per node per round)."""
    if node not in views:
        views[node] = node_view(state, node)
    return views[node]


def unannounced(state: LabState, views: dict[str, NodeView] | None = None) -> list[str]:
    """Services not (yet) announced: no lease holder, or the holder's table lacks the VIP."""
    held = leases(state)
    views = {} if views is None else views
    waiting = []
    for service, address in state.vips().items():
        holder = held.get(lease_name(service), "")
        if holder not in state.node_states:
            waiting.append(f"{service}: no lease holder")
            continue
        ns = state.node_states[holder]
        if ns.agent is None or not ns.agent.alive():
            waiting.append(f"{service}: holder {holder}'s agent is not running")
            continue
        if address not in _view_of(state, holder, views).announced:
            waiting.append(f"{service}: {address} not yet in {holder}'s l2-announce table")
    return waiting


def wait_announced(state: LabState, timeout: float) -> None:
    """Until every Service is announced and every agent has started (published its health)."""
    deadline = time.monotonic() + timeout
    while True:
        for node, ns in state.node_states.items():
            if ns.agent is not None and not ns.agent.alive():
                raise LabError(
                    f"the agent of {node} exited during start-up; its log ends:\n"
                    + tail(state.agent_log(node), 15)
                )
        views: dict[str, NodeView] = {}  # shared: a holder's database is read once, not twice
        waiting = unannounced(state, views)
        waiting += [
            f"{node}: its agent has not started yet"
            for node in state.node_states
            if not _view_of(state, node, views).health
        ]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"not every Service was announced within {timeout:g}s:\n  "
                + "\n  ".join(waiting[:10])
            )
        time.sleep(0.2)


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def admin_token(state: LabState) -> str:
    config = yaml.safe_load(state.admin_kubeconfig.read_text())
    return str(config["users"][0]["user"]["token"])


def api_fault_user(node: str) -> str:
    return node_bound_name(service_account_username(*SERVICE_ACCOUNT), node)


def partition(state: LabState, node: str, mode: str) -> list[str]:
    from lab.kubeapi.control_client import ControlClient

    _node(state, node)
    client = ControlClient(state.host_url, admin_token(state), state.ca_file)
    return client.partition(api_fault_user(node), mode)


def heal(state: LabState, node: str | None) -> int:
    from lab.kubeapi.control_client import ControlClient

    client = ControlClient(state.host_url, admin_token(state), state.ca_file)
    if node is None:
        return client.heal()
    _node(state, node)
    return client.heal(api_fault_user(node))


def exec_args(state: LabState, member: str, command: list[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run `command` inside a lab member (node or client)."""
    env = _env()
    if member == "client":
        return [*netns.enter_args(None, state.client_netns), *command], env
    ns = _node(state, member)
    if ns.sandbox is None or not ns.sandbox.alive():
        raise LabError(f"{member}'s sandbox is gone; the lab is broken: `l2lab down` and up again")
    return [*netns.enter_args(ns.sandbox.pid, ns.netns), *command], env


def run_in(state: LabState, member: str, command: list[str], timeout: float = 30.0) -> str:
    args, env = exec_args(state, member, command)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr


# -- down ---------------------------------------------------------------------------------------


def down(name: str, say: Callable[[str], None] = print) -> list[str]:
    """Remove everything the lab `name` made; works from any half-built or crashed state."""
    check_name(name)
    state = LabState.load(name)
    removed: list[str] = []
    procs: list[Proc] = []
    if state is not None:
        for ns in state.node_states.values():
            procs += [p for p in (ns.agent, ns.http, ns.sandbox) if p is not None]
        if state.apiserver is not None:
            procs.append(state.apiserver)
    for proc in procs:
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    present = netns.list_netns()  # one `ip netns list`, not one per recorded namespace
    namespaces = set(existing_namespaces(name, present))
    if state is not None:
        namespaces |= {n for n in state.namespaces if n in present}
    # Processes first (all of them: also ones a crashed l2lab never recorded), then namespaces;
    # the bpffs instances and bind mounts live in the sandboxes' mount namespaces and go with
    # their last process.
    for ns_name in sorted(namespaces):
        netns.kill_netns_processes(ns_name, grace=0.5)
    for proc in procs:
        _wait_gone(proc)
    for ns_name in sorted(namespaces):
        netns.delete_netns(ns_name)  # its processes were killed above
        removed.append(f"namespace {ns_name}")
    links = {f"{name}-api"} | set(state.host_links if state else [])
    for link in sorted(links):
        if netns.link_exists(link):
            netns.ip("link", "delete", link, check=False)
            removed.append(f"host link {link}")
    directory = lab_dir(name)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"directory {directory}")
    with contextlib.suppress(OSError):
        directory.parent.rmdir()  # /run/l2lab, when no other lab is left
    if state is not None and state.created_run_l2announcer and not any(directory.parent.glob("*")):
        with contextlib.suppress(OSError):
            RUN_L2ANNOUNCER.rmdir()  # only if still empty
            removed.append(f"directory {RUN_L2ANNOUNCER}")
    for line in removed:
        say(f"removed {line}")
    return removed


def _wait_gone(proc: Proc, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.02)


@contextlib.contextmanager
def running(name: str, **kwargs: Any) -> Iterator[LabState]:
    """A lab for the length of a with-block (tests), always taken down afterwards."""
    try:
        yield up(name, **kwargs)
    finally:
        down(name, say=lambda _: None)


def require(name: str) -> LabState:
    state = LabState.load(name)
    if state is None:
        raise LabError(f"no lab named {name!r} is up (start one with `l2lab up`)")
    return state
