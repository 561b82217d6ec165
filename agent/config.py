"""The agent's configuration: every key, its type, default, unit and reason, in one place.

Keys are the reference's (``enable-l2-announcements``, ``l2-announcements-lease-duration``, ...)
plus the few the agent needs of its own. Each can be set, in order of precedence, as a flag
(``--key=value``), an environment variable (``L2ANNOUNCER_`` + upper snake case, and
``NODE_NAME``/``K8S_NODE_NAME`` for the node name), or a file named after the key in the config
directory (a mounted ConfigMap); otherwise the default applies.

Bad values refuse to start (``ConfigError``: one line naming the key, the value, where it came
from and what is allowed). Timer relations that are wrong are clamped as the reference does, with
its warning, but reported once per agent rather than once per Service, so that a wrong value does
not bury the log.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.durations import format_duration, parse_duration

ENV_PREFIX = "L2ANNOUNCER_"


class ConfigError(Exception):
    """A configuration value that cannot be used; the message is the one line users see."""


@dataclass(frozen=True, slots=True)
class Key:
    name: str  # the flag / ConfigMap key
    kind: str  # a key of _PARSERS: bool | duration | string | float | int | kpr | addr | devices
    default: str  # as it would be written in the ConfigMap
    go_name: str  # how `l2dbg config --all` names it (the reference's DaemonConfig field)
    help: str  # what it does, its unit, and why the default


KEYS: tuple[Key, ...] = (
    Key("enable-l2-announcements", "bool", "false", "EnableL2Announcements",
        "Answer ARP for Service IPs selected by a CiliumL2AnnouncementPolicy."),
    Key("l2-announcements-lease-duration", "duration", "15s", "L2AnnouncerLeaseDuration",
        "Duration of inactivity after which a new leader is selected (the Lease's "
        "leaseDurationSeconds). Longer means slower failover, shorter means more API traffic."),
    Key("l2-announcements-renew-deadline", "duration", "5s", "L2AnnouncerRenewDeadline",
        "Interval at which the leader renews a lease; a leader that cannot renew within it stops "
        "announcing, and the datapath stops answering once the agent is silent this long."),
    Key("l2-announcements-retry-period", "duration", "2s", "L2AnnouncerRetryPeriod",
        "Timeout after a renew failure, before the next retry."),
    Key("l2-announcements-balance", "bool", "true", "L2AnnouncerBalance",
        "Spread the Service leases over the nodes: a node contests a lease only where rendezvous "
        "hashing with bounded load (at most ceil(services/nodes) + 1 per node) places it, or "
        "once it has been free for a retry period. Watches every Node's labels (one more watch)."),
    Key("l2-announcements-rebalance", "bool", "true", "L2AnnouncerRebalance",
        "With l2-announcements-balance: a node holding more than its bound hands the excess "
        "over by planned handovers, one lease per retry period; false: held leases stay."),
    Key("l2-announcements-lease-mode", "string", "per-service", "L2AnnouncerLeaseMode",
        "per-service: the holder renews each Service's lease every retry period (API writes grow "
        "with the Services held). economy: each node renews one heartbeat lease and writes a "
        "Service's lease only when its holder changes (writes per node: 1 / retry period); "
        "every agent of a cluster must use the same mode (docs/leases.md)."),
    Key("l2-announcements-garp-count", "int", "3", "L2AnnouncerGARPCount",
        "Gratuitous ARP packets (unsolicited Neighbour Advertisements for an IPv6 address) sent "
        "when this node starts answering for an IP (1-10)."),
    Key("l2-announcements-garp-interval", "duration", "500ms", "L2AnnouncerGARPInterval",
        "Time between the gratuitous ARP packets of one burst (default: at 0, 0.5 s and 1 s; "
        "for IPv6 at least 1 s, RetransTimer)."),
    Key("l2-announcements-conflict-detection", "bool", "true", "L2AnnouncerConflictDetection",
        "Watch ARP on the announcing interfaces for another host answering for a VIP this node "
        "announces; a conflict is a Warning Event, a condition, a metric and a conflicts row."),
    Key("l2-announcements-conflict-probe-interval", "duration", "1s",
        "L2AnnouncerConflictProbeInterval",
        "Time between two ARP probes (sender IP 0.0.0.0) per announced VIP and interface, which "
        "find a silent host holding the VIP; each is one 60-byte broadcast. 0s: listen only."),
    Key("enable-l2-pod-announcements", "bool", "false", "EnableL2PodAnnouncements",
        "Send a gratuitous ARP burst (unsolicited NAs for IPv6) for each pod on this node when it "
        "gets an address."),
    Key("l2-pod-announcements-interface", "string", "", "L2PodAnnouncementsInterface",
        "Interface the pod gratuitous ARPs go out of; required with enable-l2-pod-announcements."),
    Key("k8s-client-qps", "float", "0", "K8sClientQPS",
        "Client-side rate limit of API requests per second; 0 means the client default, 5. "
        "Size it as services / renew deadline."),
    Key("k8s-client-burst", "int", "0", "K8sClientBurst",
        "Requests allowed in a burst above the QPS; 0 means the client default, 10."),
    Key("kube-proxy-replacement", "kpr", "false", "KubeProxyReplacement",
        "Accepted for compatibility; true also enables external IPs, as in the reference."),
    Key("enable-external-ips", "bool", "false", "EnableExternalIPs",
        "Announce spec.externalIPs of Services whose policy has externalIPs: true; when false "
        "only their load balancer IPs are announced. kube-proxy-replacement=true forces it on."),
    Key("announce-without-endpoints", "bool", "true", "AnnounceWithoutEndpoints",
        "Announce a Service that has no ready (or serving and terminating) endpoint on any node. "
        "true keeps it reachable so kube-proxy rejects connections at once and the lease stays "
        "put while all its pods restart; false (as MetalLB) leaves it dark, with the reason "
        "no-ready-endpoint, until an endpoint is ready. For externalTrafficPolicy Local the node "
        "must also have an endpoint of its own."),
    Key("devices", "devices", "", "Devices",
        "Devices to use, space or comma separated; a trailing + is a prefix wildcard (eth+). "
        "Empty: detect them (see the devices table's reasons)."),
    Key("force-device-detection", "bool", "false", "ForceDeviceDetection",
        "Also detect devices that do not match the devices filter."),
    Key("agent-liveness-update-interval", "duration", "1s", "AgentLivenessUpdateInterval",
        "How often the agent stamps the datapath's liveness map."),
    Key("k8s-namespace", "string", "kube-system", "K8sNamespace",
        "Namespace of the agent and of its Leases."),
    Key("node-name", "string", "", "NodeName",
        "This node's name (also NODE_NAME or K8S_NODE_NAME); defaults to the host name."),
    Key("kubeconfig", "string", "", "K8sKubeConfigPath",
        "Path of a kubeconfig; empty means in-cluster configuration."),
    Key("state-dir", "string", "/run/l2announcer", "StateDir",
        "Directory of the state database (statedb.sqlite); a tmpfs, read by l2dbg."),
    Key("bpf-root", "string", "/sys/fs/bpf/tc/globals", "BPFRoot",
        "Directory the BPF maps are pinned in."),
    Key("prometheus-serve-addr", "addr", "", "PrometheusServeAddr",
        "Where to serve Prometheus metrics, host:port or :port (e.g. :9734); empty: off."),
    Key("agent-health-port", "int", "9887", "AgentHealthPort",
        "TCP port on 127.0.0.1 where the agent answers /healthz and /readyz (the DaemonSet's "
        "probes); 0: any free port. Not Cilium's 9879, which its agent uses on the same node."),
    Key("config-dir", "string", "", "ConfigDir",
        "Directory with one file per key (a mounted ConfigMap)."),
)  # fmt: skip

KEYS_BY_NAME = {k.name: k for k in KEYS}


@dataclass(frozen=True, slots=True)
class Config:
    """The resolved configuration. Durations are in seconds."""

    enable_l2_announcements: bool = False
    l2_announcements_lease_duration: float = 15.0
    l2_announcements_renew_deadline: float = 5.0
    l2_announcements_retry_period: float = 2.0
    l2_announcements_lease_mode: str = "per-service"
    l2_announcements_balance: bool = True
    l2_announcements_rebalance: bool = True
    l2_announcements_garp_count: int = 3
    l2_announcements_garp_interval: float = 0.5
    l2_announcements_conflict_detection: bool = True
    l2_announcements_conflict_probe_interval: float = 1.0
    enable_l2_pod_announcements: bool = False
    l2_pod_announcements_interface: str = ""
    k8s_client_qps: float = 0.0
    k8s_client_burst: int = 0
    kube_proxy_replacement: bool = False
    enable_external_ips: bool = False
    announce_without_endpoints: bool = True
    devices: tuple[str, ...] = ()
    force_device_detection: bool = False
    agent_liveness_update_interval: float = 1.0
    k8s_namespace: str = "kube-system"
    node_name: str = ""
    kubeconfig: str = ""
    state_dir: str = "/run/l2announcer"
    bpf_root: str = "/sys/fs/bpf/tc/globals"
    prometheus_serve_addr: str = ""
    agent_health_port: int = 9887
    config_dir: str = ""

    @property
    def effective_qps(self) -> float:
        return self.k8s_client_qps or 5.0

    @property
    def effective_burst(self) -> int:
        return self.k8s_client_burst or 10

    def value(self, key: str) -> Any:
        return getattr(self, key.replace("-", "_"))


@dataclass(frozen=True, slots=True)
class Resolved:
    config: Config
    sources: Mapping[str, str]  # key -> flag | env | config-dir | default
    warnings: tuple[str, ...]  # clamping warnings, each to be logged once


# -- parsing one value ---------------------------------------------------------------------------

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _bool(v: str) -> bool:
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("expected true or false")


def _duration(v: str) -> float:
    try:
        seconds = parse_duration(v)
    except ValueError:
        raise ValueError("expected a duration such as 15s, 500ms or 1m30s") from None
    if seconds < 0:
        raise ValueError("expected a duration that is not negative")
    return seconds


def _float(v: str) -> float:
    try:
        f = float(v)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(f) or f < 0:
        raise ValueError("expected a number that is not negative")
    return f


def _int(v: str) -> int:
    try:
        i = int(v, 10)
    except ValueError:
        raise ValueError("expected a whole number") from None
    if i < 0:
        raise ValueError("expected a whole number that is not negative")
    return i


def _string(v: str) -> str:
    return v.strip()


def _kpr(v: str) -> bool:
    if v in ("true", "false"):
        return v == "true"
    raise ValueError("expected true or false")


def _addr(v: str) -> str:
    v = v.strip()
    if not v:
        return ""
    _host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port or :port, such as :9734 or 127.0.0.1:9734")
    return v


def _devices(v: str) -> tuple[str, ...]:
    from agent.devices.options import devices_option_from_string

    return devices_option_from_string(v)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "addr": _addr,
    "devices": _devices,
    "bool": _bool,
    "duration": _duration,
    "float": _float,
    "int": _int,
    "string": _string,
    "kpr": _kpr,
}

LEASE_MODES = ("per-service", "economy")

_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "l2-announcements-lease-mode": lambda m: (
        None if m in LEASE_MODES else f"expected one of {', '.join(LEASE_MODES)}"
    ),
    "l2-announcements-garp-count": lambda n: None if 1 <= n <= 10 else "expected 1 to 10",
    "l2-announcements-garp-interval": lambda d: (
        None if 0 < d <= 10 else "expected a duration above 0s and at most 10s"
    ),
    "l2-announcements-conflict-probe-interval": lambda d: (
        None if d == 0 or 0.1 <= d <= 60 else "expected 0s (listen only) or 100ms to 1m"
    ),
    "agent-liveness-update-interval": lambda d: (
        None if 0 < d <= 60 else "expected a duration above 0s and at most 1m"
    ),
    "agent-health-port": lambda p: None if p <= 65535 else "expected a port number, 0 to 65535",
}


def _where(source: str, key: str, origin: str) -> str:
    if source == "flag":
        return f"flag --{key}"
    if source == "env":
        return f"environment variable {origin}"
    if source == "config-dir":
        return f"file {origin}"
    return "default"


def parse_value(key: str, raw: str, source: str = "flag", origin: str = "") -> Any:
    k = KEYS_BY_NAME[key]
    try:
        value = _PARSERS[k.kind](raw)
        check = _CHECKS.get(key)
        problem = check(value) if check else None
        if problem:
            raise ValueError(problem)
    except ValueError as e:
        raise ConfigError(
            f'invalid value "{raw}" for {key} ({_where(source, key, origin)}): {e}'
        ) from None
    return value


# -- gathering from the three sources -----------------------------------------------------------


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace("-", "_")


_ENV_TO_KEY = {env_name(k.name): k.name for k in KEYS}


def _from_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for name in ("K8S_NODE_NAME", "NODE_NAME"):  # NODE_NAME wins over K8S_NODE_NAME
        if env.get(name):
            found["node-name"] = (env[name], name)
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = _ENV_TO_KEY.get(name)
        if key is None:
            raise ConfigError(
                f'unknown configuration key in environment variable {name}="{value}"; '
                f"known: {', '.join(sorted(_ENV_TO_KEY))}"
            )
        found[key] = (value, name)
    return found


def _from_dir(directory: Path) -> dict[str, tuple[str, str]]:
    if not directory.is_dir():
        raise ConfigError(f"config-dir {directory} is not a directory")
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(directory.iterdir()):
        # A mounted ConfigMap also holds ..data and timestamped ..2024_... entries.
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            value = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:  # one line, never a traceback
            raise ConfigError(
                f"cannot read {path} (config-dir file for {path.name}): {e}; "
                "expected a UTF-8 text file holding the value"
            ) from None
        if path.name not in KEYS_BY_NAME or path.name == "config-dir":
            raise ConfigError(
                f'unknown configuration key "{path.name}" (value "{value}") in {directory}; '
                f"known keys: {', '.join(k.name for k in KEYS if k.name != 'config-dir')}"
            )
        found[path.name] = (value, str(path))
    return found


def resolve(flags: Mapping[str, str], env: Mapping[str, str] | None = None) -> Resolved:
    """Resolve the configuration from flags (key -> raw value), the environment and config dir."""
    env = os.environ if env is None else env
    for key in flags:
        if key not in KEYS_BY_NAME:
            raise ConfigError(f"unknown flag --{key}")
    from_env = _from_env(env)
    raw_dir = flags.get("config-dir") or (from_env.get("config-dir") or ("", ""))[0]
    from_dir = _from_dir(Path(raw_dir)) if raw_dir else {}

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for k in KEYS:
        if k.name in flags:
            raw, source, origin = flags[k.name], "flag", ""
        elif k.name in from_env:
            raw, origin = from_env[k.name]
            source = "env"
        elif k.name in from_dir:
            raw, origin = from_dir[k.name]
            source = "config-dir"
        else:
            raw, source, origin = k.default, "default", ""
        values[k.name.replace("-", "_")] = parse_value(k.name, raw, source, origin)
        sources[k.name] = source

    if not values["node_name"]:
        values["node_name"] = socket.gethostname()
    if values["kube_proxy_replacement"]:
        values["enable_external_ips"] = True
    if values["enable_l2_pod_announcements"] and not values["l2_pod_announcements_interface"]:
        raise ConfigError(
            "enable-l2-pod-announcements=true needs l2-pod-announcements-interface "
            "(the interface the pod gratuitous ARPs go out of)"
        )
    config, warnings = clamp_lease_timings(Config(**values))
    _check_economy_timings(config)
    return Resolved(config, sources, warnings)


def _check_economy_timings(c: Config) -> None:
    """Economy mode stamps the datapath only within a window after the last heartbeat renewal
    (agent/leases/heartbeat.py, stamp_window); timings that leave it shorter than a renewal's
    period would silence a healthy node between two renewals."""
    if c.l2_announcements_lease_mode != "economy":
        return
    from agent.leases.election import JITTER_FACTOR, Timings
    from agent.leases.heartbeat import CLOCK_DRIFT, stamp_window

    lease = c.l2_announcements_lease_duration
    renew = c.l2_announcements_renew_deadline
    retry = c.l2_announcements_retry_period
    window = stamp_window(Timings(lease, renew, retry))
    if window <= JITTER_FACTOR * retry:
        need = (renew + JITTER_FACTOR * retry) * (1 + CLOCK_DRIFT) / (1 - CLOCK_DRIFT)
        raise ConfigError(
            f"l2-announcements-lease-mode=economy needs l2-announcements-lease-duration above "
            f"{need:.3g}s with l2-announcements-renew-deadline {renew:g}s and "
            f"l2-announcements-retry-period {retry:g}s (renew deadline + 1.2 x retry period, "
            f"plus 2 % for clock drift), got {lease:g}s: a node cut off must stop answering "
            f"before another may take over (docs/leases.md)"
        )


def clamp_lease_timings(c: Config) -> tuple[Config, tuple[str, ...]]:
    """The reference's lease-timing clamps, in its order; each that fires adds its warning.

    The last rule's reference message says "retry-period / 2" but sets the retry period to half
    the renew deadline; the message here says what actually changes.
    """
    lease = c.l2_announcements_lease_duration
    renew = c.l2_announcements_renew_deadline
    retry = c.l2_announcements_retry_period
    warnings: list[str] = []
    p = "--l2-announcements-"
    if lease < 1.0:
        warnings.append(f"{p}lease-duration must be greater than 1s, defaulting to 1s")
        lease = 1.0
    if renew < 1e-9:
        warnings.append(f"{p}renew-deadline must be greater than 1ns, defaulting to 1s")
        renew = 1.0
    if retry < 1e-9:
        warnings.append(f"{p}retry-period must be greater than 1ns, defaulting to 200ms")
        retry = 0.2
    if lease <= renew:
        warnings.append(
            f"{p}lease-duration must be greater than {p}renew-deadline, defaulting to a 2/1 ratio"
        )
        renew = lease / 2
    if renew <= 1.2 * retry:
        warnings.append(
            f"{p}renew-deadline must be greater than {p}retry-period * 1.20, "
            f"defaulting {p}retry-period to {p}renew-deadline / 2"
        )
        retry = renew / 2
    clamped = dataclasses.replace(
        c,
        l2_announcements_lease_duration=lease,
        l2_announcements_renew_deadline=renew,
        l2_announcements_retry_period=retry,
    )
    return clamped, tuple(warnings)


def display_value(key: Key, value: Any) -> str:
    """How a value is shown (``l2dbg config``): durations as 15s, lists as [a b], bools as true."""
    if key.kind == "duration":
        return format_duration(float(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + " ".join(value) + "]"  # Go's %v of a string slice
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
