"""The lab: a LAN of network namespaces with nodes running the real agent, a client, and a real
Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager built from pinned Go
modules: lab/controlplane.py), on one machine. ``l2lab`` (cli.py) is a thin layer over the
functions here.

Picture (default name ``l2lab``, 3 nodes)::

    host ── l2lab-api (203.0.113.2/30) ─┐
                                        │ veth
    ┌ l2lab-lan ────────────────────────┴─────────────────────────────────────┐
    │ api0 203.0.113.1/30   br0 198.51.100.1/24   mgmt 203.0.113.129/25       │
    │ (kube-apiserver :6443 on all three)                                     │
    │ etcd, kube-controller-manager on 127.0.0.1                              │
    │        ports: node1   node2   node3   client   (br0)                    │
    │        mgmt:  node1   node2   node3            (mgmt)                   │
    └───────────────┬───────┬───────┬───────┬─────────────────────────────────┘
          eth0 .11 ─┘  .12 ─┘  .13 ─┘  .2 ─┘  (each in its own namespace)
    l2lab-node<i>: eth0 198.51.100.(10+i)/24, default via .1, every VIP on lo (arp_ignore=1),
                   mgmt0 203.0.113.(140+i)/25: the agent's way to kube-apiserver,
                   sandbox (own sysfs, own bpffs at /sys/fs/bpf, state at /run/l2announcer),
                   l2agent + HTTP responder :80
    l2lab-client:  eth0 198.51.100.2/24 (arping, curl)

The agents reach kube-apiserver over mgmt0, not over the LAN they announce on, as on clusters
with a management NIC of their own: ``ip link set eth0 down`` in a node then takes away its LAN
but not its API, so the node can still hand its leases over. mgmt0 is a veth without a default
route, which device detection never selects, and policy1 names ``eth`` interfaces only.

Addresses are documentation ranges (RFC 5737, RFC 3849) only: 203.0.113.0/25 holds the host
links, 203.0.113.128/25 the management network inside each lab. Nothing is forwarded or routed
off the machine: the LAN namespace does not forward, and the host only has its /30 towards it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.config import LEASE_MODES, Config, ConfigError, clamp_lease_timings, parse_value
from agent.leases.churn import needed_qps
from common.durations import parse_duration
from common.leases import is_service_lease, lease_name
from lab import controlplane, netns
from lab.access import REPO, VENV_BIN, exec_args
from lab.access import lab_env as _env
from lab.access import require as require  # `lab.require`: the lab of a name, or one line
from lab.controlplane import (
    SERVICE_CIDR,
    ControlPlane,
    ControlPlaneError,
    Ports,
    write_kubeconfig,
)
from lab.inventory import (
    API_LAN_IP,
    API_LAN_IP6,
    API_MGMT_IP,
    API_PORT,
    CLIENT_IP,
    CLIENT_IP6,
    CLIENT_MAC,
    HOST_LINK_LABS,
    HOST_LINK_PREFIX,
    MAX_NODES,
    MAX_SERVICES,
    MGMT_LINK,
    MGMT_PREFIXLEN,
    REFERENCE_TIMERS,
    SERVICE_ACCOUNT,
    SWITCH_MAC,
    LabState,
    NodeState,
    Proc,
    check_name,
    lab_dir,
    node_ip,
    node_ip6,
    node_mac,
    node_mgmt_ip,
    proc_of,
    vip,
)
from lab.netns import LabError

DEPLOY = REPO / "deploy"
RUN_L2ANNOUNCER = Path("/run/l2announcer")
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
# kubectl is not among them: the lab uses the one built with the control plane.
TOOLS = ("ip", "nsenter", "unshare", "mount", "sysctl", "nft", "bpftool", "arping", "curl")
# The agents' ServiceAccount tokens, minted by kube-apiserver at `l2lab up`: valid for a year, so
# a lab left up never loses its agents to an expired token (a kubelet would refresh them).
TOKEN_SECONDS = 365 * 24 * 3600


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
    members = ("lan", "client", "foreign")  # foreign: lab/foreign.py's host, when added
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
    for k in range(HOST_LINK_LABS):
        if k not in used:
            return k
    raise LabError(f"no free /30 left in {HOST_LINK_PREFIX}.0/25 for another lab's host link")


def up(
    name: str,
    nodes: int = 3,
    services: int = 1,
    timers: tuple[str, str, str] = REFERENCE_TIMERS,
    timeout: float | None = None,
    say: Callable[[str], None] = print,
    dual_stack: bool = True,
    balance: bool = True,
    lease_mode: str = "per-service",
) -> LabState:
    """Bring a lab up; returns once every Service is announced. Refuses if one is up already.
    ``dual_stack``: the LAN has IPv6 too and each Service an IPv6 VIP besides its IPv4 one.
    ``balance``: the agents spread the leases (l2-announcements-balance). ``lease_mode``: the
    agents' l2-announcements-lease-mode (per-service or economy)."""
    check_name(name)
    if lease_mode not in LEASE_MODES:
        raise LabError(f"--lease-mode {lease_mode}: expected one of {', '.join(LEASE_MODES)}")
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
    state = LabState(
        name=name,
        nodes=nodes,
        services=services,
        timers=timers,
        dual_stack=dual_stack,
        balance=balance,
        lease_mode=lease_mode,
    )
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
    if state.dual_stack:
        netns.ip("addr", "add", f"{API_LAN_IP6}/64", "dev", "br0", "nodad", netns=lan)
    netns.ip("link", "set", "br0", "up", netns=lan)
    netns.ip("link", "add", "mgmt", "type", "bridge", netns=lan)
    netns.ip("addr", "add", f"{API_MGMT_IP}/{MGMT_PREFIXLEN}", "dev", "mgmt", netns=lan)
    netns.ip("link", "set", "mgmt", "up", netns=lan)

    # The host link: the host reaches kube-apiserver (l2lab kubectl) without a route into
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

    for member in [*state.node_names(), "client"]:
        _add_member(state, member)
    for node in state.node_names():
        _add_node_state(state, node)
    if not RUN_L2ANNOUNCER.exists():
        RUN_L2ANNOUNCER.mkdir(mode=0o755)
        state.created_run_l2announcer = True
    state.save()

    cp = _start_control_plane(state, say)
    say("applying deploy/ (CRD, ServiceAccount, RBAC), policy1, nodes and Services")
    _apply_objects(state)
    for node in state.node_names():
        _write_node_kubeconfig(state, cp, node)
    for node in state.node_names():
        _start_node(state, node, say)


def _add_member(state: LabState, member: str) -> None:
    """A member's namespace, plugged into the LAN's switch (br0) with its address and MAC; a
    node's also gets its default route, the ARP sysctls, every VIP on lo and its management
    link."""
    if member == "client":
        address, mac, address6 = CLIENT_IP, CLIENT_MAC, CLIENT_IP6
    else:
        index = int(member[4:])
        address, mac, address6 = node_ip(index), node_mac(index), node_ip6(index)
    lan = state.lan_netns
    ns = state.netns_of(member)
    state.namespaces.append(ns)
    state.save()
    netns.add_netns(ns)
    veth = ("link", "add", member, "type", "veth", "peer", "name", "eth0", "netns", ns)
    netns.ip(*veth, netns=lan)
    netns.ip("link", "set", member, "master", "br0", "up", netns=lan)
    netns.ip("link", "set", "eth0", "address", mac, netns=ns)
    netns.ip("addr", "add", f"{address}/24", "dev", "eth0", netns=ns)
    if state.dual_stack:  # no duplicate address detection: usable at once, as the IPv4 one
        netns.ip("addr", "add", f"{address6}/64", "dev", "eth0", "nodad", netns=ns)
    netns.ip("link", "set", "eth0", "up", netns=ns)
    if member == "client":
        return
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
    # The kernel answers a Neighbour Solicitation only for addresses of the interface it
    # came in on, so IPv6 VIPs on lo need no counterpart of arp_ignore.
    for address_ in state.vips6().values():
        netns.ip("addr", "add", f"{address_}/128", "dev", "lo", "nodad", netns=ns)
    _add_mgmt_link(lan, ns, member)


def _add_node_state(state: LabState, node: str) -> None:
    state.node_states[node] = NodeState(name=node, index=int(node[4:]), netns=state.netns_of(node))
    state.node_state_dir(node).mkdir(parents=True, exist_ok=True)


def _write_node_kubeconfig(state: LabState, cp: ControlPlane, node: str) -> None:
    # As the kubelet mints a pod's token: TokenRequest for the DaemonSet's ServiceAccount.
    try:
        token = cp.service_account_token(*SERVICE_ACCOUNT, seconds=TOKEN_SECONDS)
    except ControlPlaneError as e:
        raise LabError(str(e)) from None
    write_kubeconfig(
        state.node_kubeconfig(node),
        state.mgmt_url,
        state.ca_file,
        SERVICE_ACCOUNT[1],
        token=token,
        namespace=SERVICE_ACCOUNT[0],
    )


def _start_node(state: LabState, node: str, say: Callable[[str], None]) -> None:
    """The node's pod sandbox, its HTTP backend and its agent."""
    member_state = state.node_states[node]
    sandbox_log = state.dir / node / "sandbox.log"
    member_state.sandbox = proc_of(
        netns.start_sandbox(member_state.netns, state.node_state_dir(node), sandbox_log)
    )
    state.save()
    _start_http(state, member_state)
    start_agent(state, node, say)


# -- node add -----------------------------------------------------------------------------------


def add_node(name: str, say: Callable[[str], None] = print, timeout: float = 60.0) -> str:
    """Add node N+1 to the running lab ``name``, built as ``up`` builds each node: its namespace
    on the LAN and the management network, its Node object (Ready, with its address), its
    ServiceAccount token, sandbox, HTTP backend and agent. Returns the node's name once its agent
    has started (published its health); the agents then place the Services on it themselves."""
    state = require(name)
    if state.phase != "up":
        raise LabError(
            f"lab {name!r} is {state.phase}, not up: a node joins a lab that is up "
            "(`l2lab down`, then `l2lab up`)"
        )
    index = state.nodes + 1
    if index > MAX_NODES:
        raise LabError(
            f"lab {name!r} has {state.nodes} nodes, all the addresses it has for nodes "
            f"({node_ip(1)} .. {node_ip(MAX_NODES)})"
        )
    missing = missing_requirements()
    if missing:
        raise LabError("this machine lacks what the lab needs:\n  " + "\n  ".join(missing))
    node = f"node{index}"
    # Counted first, so that everything keyed by the lab's nodes (down, status) sees the new one
    # even if building it fails half-way.
    state.nodes = index
    state.save()
    try:
        say(f"creating namespace {state.netns_of(node)} on the LAN and the management network")
        _add_member(state, node)
        _add_node_state(state, node)
        state.save()
        say(f"creating Node {node} (Ready, InternalIP {node_ip(index)}) and its agent's token")
        manifest = state.dir / f"{node}.yaml"
        manifest.write_text(
            OBJECTS_TEMPLATE.format(nodes=NODE_TEMPLATE.format(name=node), services="")
        )
        kubectl(state, "apply", "-f", str(manifest))
        _report_node_status(state, node)
        _write_node_kubeconfig(state, control_plane_of(state), node)
        _start_node(state, node, say)
        _wait_started(state, node, timeout)
    except LabError as e:
        raise LabError(
            f"{e}\nThe half-added {node} stays for inspection (l2lab status, l2lab logs {node}); "
            "l2lab down removes the lab."
        ) from e
    return node


def _wait_started(state: LabState, node: str, timeout: float) -> None:
    """Until the node's agent has published its health; a LabError if it exits or never does."""
    deadline = time.monotonic() + timeout
    while not node_view(state, node).health:
        agent = state.node_states[node].agent
        if agent is None or not agent.alive():
            raise LabError(
                f"the agent of {node} exited during start-up; its log ends:\n"
                + tail(state.agent_log(node), 15)
            )
        if time.monotonic() > deadline:
            raise LabError(f"the agent of {node} did not start within {timeout:g}s")
        time.sleep(0.2)


def _add_mgmt_link(lan: str, ns: str, member: str) -> None:
    """The node's management link: mgmt0 in the node, ``<node>-mgmt`` on the LAN namespace's
    ``mgmt`` bridge; its connected route is all the node needs to reach kube-apiserver there."""
    peer = f"{member}-mgmt"
    netns.ip("link", "add", peer, "type", "veth", "peer", "name", MGMT_LINK, "netns", ns, netns=lan)
    netns.ip("link", "set", peer, "master", "mgmt", "up", netns=lan)
    netns.ip(
        "addr",
        "add",
        f"{node_mgmt_ip(int(member[4:]))}/{MGMT_PREFIXLEN}",
        "dev",
        MGMT_LINK,
        netns=ns,
    )
    netns.ip("link", "set", MGMT_LINK, "up", netns=ns)


def control_plane_of(state: LabState) -> ControlPlane:
    """The lab's control plane: etcd, kube-apiserver and kube-controller-manager inside the LAN
    namespace on their usual ports; kube-apiserver on every address there (203.0.113.129 for the
    agents, 198.51.100.1 on the LAN, the host link's LAN end for the host), which its
    certificate names."""
    return ControlPlane(
        state.control_plane_dir,
        Path(state.bin_dir),
        bind="0.0.0.0",
        advertise=API_LAN_IP,
        addresses=[API_LAN_IP, state.api_host_ip, API_MGMT_IP],
        ports=Ports(),
        netns=state.lan_netns,
        dial=state.api_host_ip,  # the host's way in: the host link
        procs=dict(state.control_plane),
        # Dual-stack Services need an IPv6 range for their cluster IPs too (the later flag wins).
        apiserver_args=(
            (f"--service-cluster-ip-range={SERVICE_CIDR},{SERVICE_CIDR6}",)
            if state.dual_stack
            else ()
        ),
    )


def _start_control_plane(state: LabState, say: Callable[[str], None]) -> ControlPlane:
    try:
        # Built on the first use on this machine (minutes, with progress); a cache hit after.
        bin_dir = controlplane.binaries(
            say=lambda line: say(line.removeprefix("controlplane-build: "))
        )
    except ControlPlaneError as e:
        raise LabError(str(e)) from None
    state.bin_dir = str(bin_dir)
    state.save()
    say(
        f"starting the control plane (etcd, kube-apiserver, kube-controller-manager) in "
        f"{state.lan_netns}: {state.mgmt_url} (agents), {state.host_url} (host)"
    )
    cp = control_plane_of(state)
    try:
        cp.start()
    except ControlPlaneError as e:
        raise LabError(str(e)) from None
    finally:
        state.control_plane = dict(cp.procs)
        state.save()
    write_kubeconfig(
        state.admin_kubeconfig,
        state.host_url,
        state.ca_file,
        "admin",
        cert=cp.pki.cert("admin"),
        key=cp.pki.key("admin"),
    )
    t = cp.timings
    say(
        f"control plane ready in {t['ready']:.1f}s (etcd and kube-apiserver "
        f"{t['kube-apiserver']:.1f}s, then kube-controller-manager and the default namespace)"
    )
    return cp


def kubectl(state: LabState, *args: str, check: bool = True) -> str:
    """The built kubectl, as the lab's admin, from the host."""
    return netns.run(
        [str(state.kubectl_path), f"--kubeconfig={state.admin_kubeconfig}", *args],
        check=check,
        timeout=60,
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
    kubectl(
        state, "wait", "--for=condition=established", "--timeout=60s", "-f", str(DEPLOY / "crds")
    )
    policy = state.dir / "policy1.yaml"
    policy.write_text(yaml.safe_dump(policy1(), sort_keys=False))
    kubectl(state, "apply", "-f", str(policy))
    manifest = state.dir / "objects.yaml"
    manifest.write_text(OBJECTS_TEMPLATE.format(
        nodes="".join(NODE_TEMPLATE.format(name=n) for n in state.node_names()),
        services="".join(
            SERVICE_TEMPLATE.format(name=s, families=DUAL_STACK if state.dual_stack else "")
            for s in state.vips()
        ),
    ))  # fmt: skip
    kubectl(state, "apply", "-f", str(manifest))
    # What a kubelet would report (the node's address, Ready) and the lab's LB-IPAM would write.
    for node in state.node_names():
        _report_node_status(state, node)
    vips6 = state.vips6()
    for service, address in state.vips().items():
        ingress = [{"ip": address}] + ([{"ip": vips6[service]}] if service in vips6 else [])
        status = json.dumps({"status": {"loadBalancer": {"ingress": ingress}}})
        kubectl(state, "patch", "service", service, "--subresource=status", "--type=merge",
                "-p", status)  # fmt: skip


def _report_node_status(state: LabState, node: str) -> None:
    status = NODE_STATUS.format(name=node, ip=node_ip(int(node[4:])))
    kubectl(state, "patch", "node", node, "--subresource=status", "--type=merge", "-p", status)


OBJECTS_TEMPLATE = "apiVersion: v1\nkind: List\nitems:\n{nodes}{services}"
NODE_TEMPLATE = """- apiVersion: v1
  kind: Node
  metadata:
    name: {name}
    labels: {{kubernetes.io/hostname: {name}, kubernetes.io/os: linux,
             node-role.kubernetes.io/worker: ""}}
"""
SERVICE_TEMPLATE = """- apiVersion: v1
  kind: Service
  metadata: {{name: {name}, namespace: default, labels: {{color: blue}}}}
  spec: {{type: LoadBalancer, ports: [{{name: http, port: 80, protocol: TCP}}]{families}}}
"""
DUAL_STACK = ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]"
SERVICE_CIDR6 = "2001:db8:ffff::/112"  # the cluster IPs of dual-stack Services
NODE_STATUS = (
    '{{"status": {{"addresses": [{{"type": "InternalIP", "address": "{ip}"}}, '
    '{{"type": "Hostname", "address": "{name}"}}], '
    '"conditions": [{{"type": "Ready", "status": "True", "reason": "KubeletReady"}}]}}}}'
)


def set_service_ip(state: LabState, service: str, address: str) -> str:
    """Give ``service`` the IPv4 VIP ``address`` (its load-balancer status, as an IPAM sharing
    one address between Services would): one of the lab's VIPs, which every node has on lo."""
    vips = state.vips()
    if service not in vips:
        raise LabError(
            f"no Service {service!r} in lab {state.name!r} (Services: {', '.join(vips)})"
        )
    own = {s: vip(i) for i, s in enumerate(vips, start=1)}
    if address not in own.values():
        raise LabError(
            f"--ip {address}: use one of the lab's VIPs, e.g. {own['service-1']} (service-1's), "
            "to share it"
        )
    vips6 = state.vips6()
    ingress = [{"ip": address}] + ([{"ip": vips6[service]}] if service in vips6 else [])
    status = json.dumps({"status": {"loadBalancer": {"ingress": ingress}}})
    kubectl(
        state, "patch", "service", service, "--subresource=status", "--type=merge", "-p", status
    )
    if address == own[service]:
        state.shared_ips.pop(service, None)
    else:
        state.shared_ips[service] = address
    state.save()
    sharing = sorted(s for s, ip in state.vips().items() if ip == address and s != service)
    return f"{service}: VIP {address}" + (f", shared with {', '.join(sharing)}" if sharing else "")


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


METRICS_PORT = 9734  # the chart's default (prometheus.port); 9962 is Cilium's agent's


def agent_args(state: LabState, node: str) -> list[str]:
    lease, renew, retry = state.timers
    # What the agents really send: every held lease and the node's heartbeat are renewed once per
    # retry period (the seed's sizing, leases / renew deadline, leaves the fast timers' 200 ms
    # renewals waiting in the limiter), with room to spare; the retry period the agent will use
    # (it clamps wrong values, e.g. 0, as the reference).
    effective, _ = clamp_lease_timings(
        Config(
            l2_announcements_lease_duration=parse_duration(lease),
            l2_announcements_renew_deadline=parse_duration(renew),
            l2_announcements_retry_period=parse_duration(retry),
        )
    )
    qps = max(5, needed_qps(state.services + 1, effective.l2_announcements_retry_period))
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
        f"--l2-announcements-balance={'true' if state.balance else 'false'}",
        f"--l2-announcements-lease-mode={state.lease_mode}",
        # Each node is its own network namespace: the same port on every node, as a DaemonSet.
        f"--prometheus-serve-addr=:{METRICS_PORT}",
    ]


def start_agent(state: LabState, node: str, say: Callable[[str], None] = print) -> Proc:
    ns = _node(state, node)
    if ns.agent is not None and ns.agent.alive():
        raise LabError(f"the agent of {node} is already running (pid {ns.agent.pid})")
    if ns.sandbox is None or not ns.sandbox.alive():
        raise LabError(f"{node}'s sandbox is gone; the lab is broken: `l2lab down` and up again")
    # A new pod gets a new memory volume for its state (a restarted container keeps its pod's).
    state_dir = state.node_state_dir(node)
    state_dir.mkdir(parents=True, exist_ok=True)
    netns.mount_state(ns.sandbox.pid, state_dir)
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


def delete_pod(state: LabState, node: str) -> None:
    """The kubelet's part of deleting the agent's pod once its container has stopped: the pod's
    memory volume (the state directory) goes with it. The next :func:`start_agent` is a new pod."""
    ns = _node(state, node)
    if ns.agent is not None and ns.agent.alive():
        raise LabError(f"the agent of {node} is still running (pid {ns.agent.pid}); stop it first")
    if ns.sandbox is not None and ns.sandbox.alive():
        netns.unmount_state(ns.sandbox.pid)
    shutil.rmtree(state.node_state_dir(node), ignore_errors=True)


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
        if is_service_lease(i["metadata"]["name"])
    }


@dataclass(frozen=True)
class NodeView:
    announced: dict[str, str]  # ip -> interface (status Done only)
    pending: list[str]
    health: list[tuple[str, str, str]]  # module, level, message


def node_view(state: LabState, node: str) -> NodeView:
    from common.tables import L2_ANNOUNCE
    from common.tables.health import HEALTH
    from statedb.readonly import ReadOnlyDatabase
    from statedb.status import StatusKind

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
    vips6 = state.vips6()
    for service, address in state.vips().items():
        holder = held.get(lease_name("default", service), "")
        if holder not in state.node_states:
            waiting.append(f"{service}: no lease holder")
            continue
        ns = state.node_states[holder]
        if ns.agent is None or not ns.agent.alive():
            waiting.append(f"{service}: holder {holder}'s agent is not running")
            continue
        for ip in (address, vips6.get(service)):
            if ip is not None and ip not in _view_of(state, holder, views).announced:
                waiting.append(f"{service}: {ip} not yet in {holder}'s l2-announce table")
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


# -- API faults: nftables rules in a node's namespace ---------------------------------------------

API_FAULTS = ("stall", "refuse", "heal")
NFT_TABLE = "l2lab"  # the lab's own table in a node's namespace; heal deletes it


def api_fault_rules(fault: str, address: str = API_MGMT_IP, port: int = API_PORT) -> str:
    """The nft script that puts ``fault`` on a node's traffic with kube-apiserver, atomically
    replacing any earlier one.

    stall: packets both ways are dropped, so connections (also established ones, such as a watch)
    hang, and new ones time out, as when a link or the server silently dies. refuse: every packet
    is answered with a TCP reset, so requests fail at once (refused connections, reset ones), as
    when nothing listens any more. The incoming rule lets resets through: the one the outgoing
    rule makes comes in from the server's address, and must reach the node's socket. heal: the
    table is gone."""
    if fault not in API_FAULTS:
        raise LabError(f"{fault!r}: an API fault is one of {', '.join(API_FAULTS)}")
    # Creating the table first makes the delete harmless when there is none.
    script = f"table ip {NFT_TABLE} {{}}\ndelete table ip {NFT_TABLE}\n"
    if fault == "heal":
        return script
    out_verdict, in_match, in_verdict = (
        ("drop", "", "drop") if fault == "stall"
        else ("reject with tcp reset", " tcp flags & rst == 0", "reject with tcp reset")
    )  # fmt: skip
    return script + (
        f"table ip {NFT_TABLE} {{\n"
        "  chain output {\n"
        "    type filter hook output priority filter; policy accept;\n"
        f"    ip daddr {address} tcp dport {port} {out_verdict}\n"
        "  }\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f"    ip saddr {address} tcp sport {port}{in_match} {in_verdict}\n"
        "  }\n"
        "}\n"
    )


def api_fault(state: LabState, node: str, fault: str) -> list[str]:
    """Stall, refuse or heal the traffic between ``node`` (or every node: ``all``) and
    kube-apiserver; returns the nodes it applied to."""
    script = api_fault_rules(fault)
    nodes = list(state.node_states) if node == "all" else [_node(state, node).name]
    for name in nodes:
        ns = state.node_states[name]
        netns.nft(ns.netns, script)
        ns.api_fault = "" if fault == "heal" else fault
        state.save()
    return nodes


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
        procs += state.control_plane.values()
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
