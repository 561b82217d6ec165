"""Where a lab lives on the host and what it made, so that ``l2lab down`` can undo all of it.

A lab is named (default ``l2lab``, or ``L2LAB_NAME`` / ``l2lab --name``); everything it creates
carries the name: the namespaces ``<name>-lan``, ``<name>-node1``.., ``<name>-client``, the host
link ``<name>-api``, and the directory ``/run/l2lab/<name>/`` (``L2LAB_RUN_DIR`` moves the parent)
holding the control plane's data, PKI and logs (``controlplane/``), the kubeconfigs, each node's
state directory and log, and ``state.json``.

``state.json`` is written before anything is created and updated after each step, so a crashed
``l2lab up`` leaves a record of what to remove: every process the lab started (the control
plane's etcd, kube-apiserver and kube-controller-manager, each node's sandbox, agent and HTTP
responder) with its start time. ``l2lab down`` trusts it but does not depend on it: it also
removes every namespace and host link carrying the name and every process inside those
namespaces (the control plane runs inside ``<name>-lan``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_NAME = "l2lab"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
RUN_DIR = Path(os.environ.get("L2LAB_RUN_DIR", "/run/l2lab"))

# The LAN: documentation addresses only (RFC 5737). .1 is the switch's management address, where
# kube-apiserver listens; .2 the client; nodes from .11; Service VIPs from .101.
LAN_PREFIX = "198.51.100"
API_LAN_IP = f"{LAN_PREFIX}.1"
CLIENT_IP = f"{LAN_PREFIX}.2"
NODE_BASE = 10
VIP_BASE = 100
MAX_NODES = 50
MAX_SERVICES = 150
# IPv6 on the same LAN: the documentation prefix 2001:db8::/64 with the IPv4 host numbers written
# as they read (::1 the switch, ::2 the client, nodes from ::11), and VIPs from ::1:101: the nodes'
# link-local addresses end in their MACs' 00:01:0i, so ::10i would share its solicited-node group
# with node i's own address, and the lab would not show whether the agent joins it.
LAN6_PREFIX = "2001:db8::"
API_LAN_IP6 = f"{LAN6_PREFIX}1"
CLIENT_IP6 = f"{LAN6_PREFIX}2"
# The host reaches the API server over a point-to-point link into the LAN namespace, one /30 of
# 203.0.113.0/25 per lab (the host side is .4k+2, the LAN namespace side .4k+1).
HOST_LINK_PREFIX = "203.0.113"
API_PORT = 6443  # kube-apiserver's secure port (lab.controlplane.Ports' default)
# The management network: each node's second link, mgmt0, to a bridge of its own in the LAN
# namespace where kube-apiserver listens too; the agents reach the API over it, apart from the LAN
# they announce on, as on clusters with a dedicated management NIC. A node whose LAN link goes
# down can then still hand its leases over. The lab uses documentation addresses only, and
# 192.0.2.0/24 is the Service CIDR: 203.0.113.0/24 is split, its lower half for the host links
# (one /30 per lab, on the host), its upper half for the management network, which lives in the
# lab's own namespaces only, so every lab reuses it.
HOST_LINK_LABS = 32  # /30s in 203.0.113.0/25
MGMT_PREFIX = "203.0.113"
MGMT_PREFIXLEN = 25  # 203.0.113.128/25
API_MGMT_IP = f"{MGMT_PREFIX}.129"
MGMT_NODE_BASE = 140  # node i is .(140 + i): .141 .. .190
MGMT_LINK = "mgmt0"  # a veth without a default route: device detection never selects it
SERVICE_ACCOUNT = ("kube-system", "l2announcer")
# The reference's lease duration, renew deadline and retry period: what `l2lab up` uses.
REFERENCE_TIMERS = ("15s", "5s", "2s")
FAST_TIMERS = ("3s", "1s", "200ms")  # the seed's fast-failover example


def node_ip(index: int) -> str:
    return f"{LAN_PREFIX}.{NODE_BASE + index}"


def node_mgmt_ip(index: int) -> str:
    return f"{MGMT_PREFIX}.{MGMT_NODE_BASE + index}"


def vip(index: int) -> str:
    return f"{LAN_PREFIX}.{VIP_BASE + index}"


def node_ip6(index: int) -> str:
    return f"{LAN6_PREFIX}{NODE_BASE + index}"


def vip6(index: int) -> str:
    return f"{LAN6_PREFIX}1:{VIP_BASE + index}"


def node_mac(index: int) -> str:
    return f"02:4c:32:00:01:{index:02x}"


CLIENT_MAC = "02:4c:32:00:02:01"
SWITCH_MAC = "02:4c:32:00:00:01"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"lab name {name!r}: use 1-8 lower-case letters and digits, starting with a letter "
            "(it prefixes namespace and interface names, which are at most 15 characters)"
        )
    return name


@dataclass
class Proc:
    """A process the lab started: its pid and kernel start time (so a reused pid is never hit)."""

    pid: int
    start_time: int

    def alive(self) -> bool:
        return start_time_of(self.pid) == self.start_time


def start_time_of(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), or None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def proc_of(pid: int) -> Proc:
    return Proc(pid, start_time_of(pid) or 0)


@dataclass
class NodeState:
    name: str
    index: int
    netns: str
    sandbox: Proc | None = None
    agent: Proc | None = None
    http: Proc | None = None
    api_fault: str = ""  # "", "stall" or "refuse": the nft rules `l2lab api` put in its namespace


@dataclass
class LabState:
    name: str
    nodes: int = 3
    services: int = 1
    timers: tuple[str, str, str] = REFERENCE_TIMERS
    host_link_net: int = -1  # k: this lab's host link is 203.0.113.4k/30
    dual_stack: bool = True  # each Service has an IPv6 VIP besides its IPv4 one
    balance: bool = True  # the agents' l2-announcements-balance
    lease_mode: str = "per-service"  # the agents' l2-announcements-lease-mode
    shared_ips: dict[str, str] = field(default_factory=dict)  # Service -> another's VIP it uses
    created_run_l2announcer: bool = False
    phase: str = "creating"  # creating | up | failed
    bin_dir: str = ""  # where the built kubectl, kube-apiserver... are (lab.controlplane.binaries)
    control_plane: dict[str, Proc] = field(default_factory=dict)  # component -> its process
    node_states: dict[str, NodeState] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)

    # -- paths ----------------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def control_plane_dir(self) -> Path:
        """etcd's data, the PKI, the components' logs (lab.controlplane.ControlPlane.dir)."""
        return self.dir / "controlplane"

    @property
    def ca_file(self) -> Path:
        return self.control_plane_dir / "pki" / "ca.crt"

    @property
    def kubectl_path(self) -> Path:
        return Path(self.bin_dir) / "kubectl"

    def node_kubeconfig(self, node: str) -> Path:
        return self.dir / node / "kubeconfig"

    def node_state_dir(self, node: str) -> Path:
        return self.dir / node / "state"

    def agent_log(self, node: str) -> Path:
        return self.dir / node / "agent.log"

    # -- names and addresses --------------------------------------------------------------------

    def netns_of(self, member: str) -> str:
        """The namespace of a lab member: ``lan``, ``client`` or ``node<i>``."""
        return f"{self.name}-{member}"

    @property
    def lan_netns(self) -> str:
        return self.netns_of("lan")

    @property
    def client_netns(self) -> str:
        return self.netns_of("client")

    @property
    def host_link(self) -> str:
        return f"{self.name}-api"

    @property
    def api_host_ip(self) -> str:
        return f"{HOST_LINK_PREFIX}.{4 * self.host_link_net + 1}"

    @property
    def host_ip(self) -> str:
        return f"{HOST_LINK_PREFIX}.{4 * self.host_link_net + 2}"

    @property
    def host_url(self) -> str:
        return f"https://{self.api_host_ip}:{API_PORT}"

    @property
    def lan_url(self) -> str:
        return f"https://{API_LAN_IP}:{API_PORT}"

    @property
    def mgmt_url(self) -> str:
        """Where the agents reach kube-apiserver: over their management link."""
        return f"https://{API_MGMT_IP}:{API_PORT}"

    def node_names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.nodes + 1)]

    def vips(self) -> dict[str, str]:
        """Each Service's IPv4 VIP: its own, or the one it shares (``l2lab service --ip``)."""
        own = {f"service-{i}": vip(i) for i in range(1, self.services + 1)}
        return {s: self.shared_ips.get(s, ip) for s, ip in own.items()}

    def vips6(self) -> dict[str, str]:
        """Each Service's IPv6 VIP; none in a single-stack lab."""
        if not self.dual_stack:
            return {}
        return {f"service-{i}": vip6(i) for i in range(1, self.services + 1)}

    # -- persistence ----------------------------------------------------------------------------

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        tmp.replace(self.dir / "state.json")

    @classmethod
    def load(cls, name: str) -> LabState | None:
        path = lab_dir(name) / "state.json"
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        procs = ("sandbox", "agent", "http")
        try:
            nodes = {
                k: NodeState(**{**v, **{p: _proc(v.get(p)) for p in procs}})
                for k, v in raw.get("node_states", {}).items()
            }
            control_plane = {
                k: p for k, v in raw.get("control_plane", {}).items() if (p := _proc(v))
            }
            return cls(**{**raw, "timers": _timers(raw.get("timers")),
                          "control_plane": control_plane, "node_states": nodes})  # fmt: skip
        except (TypeError, KeyError):  # written by another version: `l2lab down` still works
            return None


def _timers(raw: Any) -> tuple[str, str, str]:
    if isinstance(raw, list) and len(raw) == 3:
        return str(raw[0]), str(raw[1]), str(raw[2])
    return REFERENCE_TIMERS


def _proc(raw: dict[str, int] | None) -> Proc | None:
    return None if raw is None else Proc(raw["pid"], raw["start_time"])


def lab_dir(name: str) -> Path:
    return RUN_DIR / name


def known_labs() -> list[str]:
    with contextlib.suppress(OSError):
        return sorted(p.name for p in RUN_DIR.iterdir() if (p / "state.json").exists())
    return []
