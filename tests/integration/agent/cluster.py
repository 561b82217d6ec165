"""A small cluster for agent tests on the real control plane: nodes, a policy, Services with load
balancer IPs, and real ``l2agent`` processes, one per node.

The control plane is the session's (``tests/kube.py``); this test owns a namespace in it, where
its Services, its agents' Leases (``--k8s-namespace``) and its agents' ServiceAccounts live, and a
name prefix for what is cluster-scoped (Nodes, policies, the ClusterRole). Tests speak of nodes
by logical names (``node1``); the Node objects, and so the agents' lease holder identities, carry
the prefixed names (``cluster.real("node1")``), and what the cluster reports (announcers,
holders, lease writers) is translated back.

Each agent runs as its own ServiceAccount (``system:serviceaccount:<ns>:node1``), bound to copies
of the shipped RBAC (``deploy/clusterrole.yaml`` under the prefixed name, ``deploy/role.yaml`` in
the test's namespace), with a token the apiserver minted: the RBAC under test is what is deployed,
and the audit log tells the nodes apart. An agent started with ``proxied=True`` reaches the
apiserver through its own ``FaultProxy`` (``cluster.proxies[node]``), which can stall or reset
that node alone. Policies select only this test's Services (their serviceSelector gets the
namespace label), so tests sharing the control plane cannot see each other's VIPs.

The agents share this host, so they run with ``--no-datapath`` (no BPF) and ``--devices lo`` (the
same selected device on any machine); what they would answer for is their ``l2-announce`` table,
read from each one's state database like ``l2dbg`` does.

``Sampler`` reads every agent's table in a loop and keeps the timeline (wall clock, the clock of
the apiserver's audit log); ``lease_history`` reads who wrote which lease when from the audit log
(each write's Lease as the apiserver left it); ``check_leases`` and ``check_announcements`` judge
both (see their docstrings).
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes import client

from common.leases import is_service_lease, lease_name
from common.tables import L2_ANNOUNCE
from lab.inventory import FAST_TIMERS, REFERENCE_TIMERS
from statedb import ReadOnlyDatabase, Table
from tests.faultproxy import FaultProxy
from tests.kube import AuditEvent, Kube
from tests.kube import until as until  # the agent tests' one wait helper, from here too

REPO = Path(__file__).resolve().parents[3]
FAST = FAST_TIMERS
DEFAULT = REFERENCE_TIMERS
SERVICE_NAMESPACE_LABEL = "io.kubernetes.service.namespace"

# What an agent may do: the RBAC it is deployed with (the seed's lease verbs plus watch, in its
# namespace; reading what it reflects, policy status and Announcing events), so these tests also
# prove the shipped rules are enough (no agent request is ever refused).
CLUSTER_ROLE = REPO / "deploy" / "clusterrole.yaml"
ROLE = REPO / "deploy" / "role.yaml"
AGENT_ROLE = "l2announcer"


# For benchmarks, which only count requests: who asked for what and the answer's code, without
# the lease bodies the tests' policy keeps (hundreds of lease writes a second would pay for them).
REQUESTS_ONLY_AUDIT = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


def settles(pred: Callable[[], bool], hold: float, timeout: float, what: str = "state") -> float:
    """Wait until ``pred`` has held for ``hold`` seconds in a row; returns when it began to."""
    start = time.monotonic()
    since: float | None = None
    while True:
        now = time.monotonic()
        if pred():
            since = now if since is None else since
            if now - since >= hold:
                return since - start
        else:
            since = None
        if now - start > timeout:
            raise AssertionError(f"{what} did not settle for {hold}s within {timeout}s")
        time.sleep(0.05)


def agent_roles(kube: Kube) -> list[tuple[str, str]]:
    """Copies of the shipped ClusterRole (under the test's prefix) and Role (in the test's
    namespace), as ``Kube.service_account`` takes them; making them again is harmless."""
    cluster_role = kube.name(AGENT_ROLE)
    obj = yaml.safe_load(CLUSTER_ROLE.read_text())
    obj["metadata"] = {"name": cluster_role, "labels": obj["metadata"].get("labels", {})}
    kube.cp.apply(obj)
    kube.on_cleanup(lambda: kube.rbac.delete_cluster_role(cluster_role))
    role = yaml.safe_load(ROLE.read_text())
    role["metadata"] = {"name": AGENT_ROLE, "namespace": kube.namespace}
    kube.cp.apply(role)
    return [("ClusterRole", cluster_role), ("Role", AGENT_ROLE)]


def agent_credentials(kube: Kube, name: str) -> Path:
    """A kubeconfig of ServiceAccount ``name`` in the test's namespace, with the agent's RBAC."""
    return kube.service_account(name, agent_roles(kube))


def proxy_to(kube: Kube) -> FaultProxy:
    """A running FaultProxy in front of the session's apiserver, stopped with the test."""
    server = urlsplit(kube.cp.url)
    assert server.hostname is not None and server.port is not None
    proxy = FaultProxy((server.hostname, server.port)).start()
    kube.on_cleanup(proxy.stop)
    return proxy


def through(kubeconfig: Path, proxy: FaultProxy) -> Path:
    """A copy of ``kubeconfig`` that reaches the apiserver through ``proxy``."""
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = proxy.url
    via = kubeconfig.with_name(f"{kubeconfig.stem}-via-{proxy.port}.kubeconfig")
    via.write_text(yaml.safe_dump(config, sort_keys=False))
    via.chmod(0o600)
    return via


class Cluster:
    def __init__(self, kube: Kube, tmp: Path) -> None:
        self.kube = kube
        self.tmp = tmp
        self.namespace = kube.namespace
        self.core = kube.core
        self.custom = kube.custom
        self.coordination = kube.coordination
        self.started = time.time()  # audit events before this are another test's
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.kubeconfigs: dict[str, Path] = {}
        self.proxies: dict[str, FaultProxy] = {}
        self._real: dict[str, str] = {}  # logical node name -> Node name
        self._logical: dict[str, str] = {}
        self.sampler = Sampler(self)
        self.overlaps = self.sampler.overlaps

    # -- names ----------------------------------------------------------------------------

    def real(self, node: str) -> str:
        """The Node name (and lease holder identity) of logical node ``node``."""
        return self._real.get(node) or self.kube.name(node)

    def logical(self, name: str) -> str:
        """The logical name of a Node name (or a holder identity); other names are kept."""
        return self._logical.get(name, name)

    def user(self, node: str) -> str:
        """The audit log's user name of ``node``'s agent."""
        return self.kube.user(node)

    def node_of(self, user: str) -> str:
        prefix = f"system:serviceaccount:{self.namespace}:"
        return user.removeprefix(prefix) if user.startswith(prefix) else user

    def lease(self, service: str | int) -> str:
        """The lease of Service ``service`` (or of ``service-<i>``) of this test."""
        name = f"service-{service}" if isinstance(service, int) else service
        return lease_name(self.namespace, name)

    # -- credentials ------------------------------------------------------------------------

    def credentials(self, node: str, proxied: bool = False) -> Path:
        """``node``'s kubeconfig: a token of ServiceAccount <ns>/<node>, bound to the agent's
        roles (made on first use); ``proxied``: it names the node's FaultProxy as the server."""
        if node not in self.kubeconfigs:
            self.kubeconfigs[node] = agent_credentials(self.kube, node)
        path = self.kubeconfigs[node]
        if not proxied:
            return path
        proxy = self.proxies.get(node)
        if proxy is None:
            proxy = self.proxies[node] = proxy_to(self.kube)
        return through(path, proxy)

    # -- objects --------------------------------------------------------------------------

    def node(self, name: str, **labels: str) -> str:
        real = self.kube.name(name)
        self._real[name], self._logical[real] = real, name
        labels = {"kubernetes.io/hostname": real, **labels}
        self.core.create_node({"metadata": {"name": real, "labels": labels}})  # type: ignore[arg-type]
        self.kube.on_cleanup(lambda: self.core.delete_node(real))
        return real

    def policy(self, name: str, spec: dict[str, Any]) -> str:
        """Policy ``name`` (prefixed) with ``spec``, its serviceSelector narrowed to this test's
        namespace."""
        real = self.kube.name(name)
        spec = copy.deepcopy(spec)
        selector = spec.setdefault("serviceSelector", {})
        selector.setdefault("matchLabels", {})[SERVICE_NAMESPACE_LABEL] = self.namespace
        body = {
            "apiVersion": "cilium.io/v2alpha1",
            "kind": "CiliumL2AnnouncementPolicy",
            "metadata": {"name": real},
            "spec": spec,
        }
        self.custom.create_cluster_custom_object(
            "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", body
        )
        self.kube.on_cleanup(
            lambda: self.custom.delete_cluster_custom_object(
                "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", real
            )
        )
        return real

    def service(self, name: str, ip: str, **labels: str) -> None:
        self.core.create_namespaced_service(
            self.namespace,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            },  # type: ignore[arg-type]
        )
        self.core.patch_namespaced_service_status(
            name, self.namespace, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
        )

    def services(
        self, n: int, ip: Callable[[int], str] = lambda i: f"198.51.100.{10 + i}", **labels: str
    ) -> dict[str, str]:
        """Policy policy1 (every load balancer IP, on lo) and Services service-1..n with the
        addresses ``ip(i)``; returns lease name -> IP."""
        self.policy("policy1", {"loadBalancerIPs": True, "interfaces": ["^lo$"]})
        ip_of = {}
        for i in range(1, n + 1):
            self.service(f"service-{i}", ip(i), **labels)
            ip_of[self.lease(i)] = ip(i)
        return ip_of

    def holder(self, lease: str) -> str:
        """The logical node holding ``lease`` ("" if nobody, or no such lease)."""
        try:
            got = self.coordination.read_namespaced_lease(lease, self.namespace)
        except client.ApiException:
            return ""
        return self.logical(str(getattr(got.spec, "holder_identity", "") or ""))

    # -- agents ---------------------------------------------------------------------------

    def start_agent(
        self,
        node: str,
        timers: tuple[str, str, str] = FAST,
        extra: Sequence[str] = (),
        proxied: bool = False,
    ) -> None:
        state = self.tmp / node
        state.mkdir(exist_ok=True)
        args = [
            str(Path(sys.executable).parent / "l2agent"),
            "--enable-l2-announcements",
            f"--kubeconfig={self.credentials(node, proxied)}",
            f"--k8s-namespace={self.namespace}",
            f"--node-name={self.real(node)}",
            f"--state-dir={state}",
            "--devices=lo",
            f"--l2-announcements-lease-duration={timers[0]}",
            f"--l2-announcements-renew-deadline={timers[1]}",
            f"--l2-announcements-retry-period={timers[2]}",
            "--no-datapath",
            # The agents share the host's loopback: each its own free port for the probes.
            "--agent-health-port=0",
            *extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("L2ANNOUNCER_")}
        log = (self.tmp / f"{node}.log").open("ab")
        self.agents[node] = subprocess.Popen(args, stdout=log, stderr=log, env=env)

    def signal(self, node: str, sig: signal.Signals) -> float:
        t = time.monotonic()
        self.agents[node].send_signal(sig)
        return t

    def announced(self, node: str) -> set[str]:
        """The IPs ``node``'s agent has in l2-announce (empty if it is not running)."""
        proc = self.agents.get(node)
        if proc is None or proc.poll() is not None:
            return set()
        return {e.ip for e in self.rows(node, L2_ANNOUNCE)}

    def rows(self, node: str, table: Table[Any]) -> list[Any]:
        """Rows of ``table`` in ``node``'s state database (empty if it cannot be read yet: not
        created, or mid-write)."""
        try:
            path = self.tmp / node / "statedb.sqlite"
            with ReadOnlyDatabase.open(path) as ro, ro.snapshot() as snap:
                return snap.rows(table) if snap.has_table(table) else []
        except Exception:
            return []

    def announcers(self, ip: str) -> list[str]:
        return [n for n in self.agents if ip in self.announced(n)]

    def tables(self) -> dict[str, set[str]]:
        """Every agent's l2-announce IPs, read once each."""
        return {n: self.announced(n) for n in list(self.agents)}

    def each_announced_once(
        self, ips: Iterable[str], tables: dict[str, set[str]] | None = None
    ) -> bool:
        tables = self.tables() if tables is None else tables
        return all(sum(ip in t for t in tables.values()) == 1 for ip in ips)

    def moved_from(self, node: str, ips: Iterable[str]) -> bool:
        """Every IP announced once, none by ``node`` (from one read of each table: the check
        must not mix two moments)."""
        tables = self.tables()
        return self.each_announced_once(ips, tables) and not tables[node]

    def busiest(self) -> tuple[str, int]:
        """The node announcing the most IPs, and how many."""
        return Counter(n for n, t in self.tables().items() for _ in t).most_common(1)[0]

    def watch_for_overlaps(self, ips: list[str]) -> None:
        """Sample every agent's table until stopped; record any IP announced by two nodes."""
        self.sampler.start(ips)

    # -- the server's account -------------------------------------------------------------

    def audit(
        self, since: float | None = None, resource: str | None = "leases"
    ) -> list[AuditEvent]:
        """This test's finished requests (``resource``: None for any) since ``since`` (default:
        the cluster's start), as the apiserver logged them. Written once the response is sent:
        a request that just returned may take a moment to appear."""
        return self.kube.audit(self.started if since is None else since, resource)

    def agent_requests(
        self, since: float | None = None, resource: str | None = None
    ) -> list[AuditEvent]:
        """Requests of this test's agents (ServiceAccounts of its namespace), anywhere."""
        prefix = f"system:serviceaccount:{self.namespace}:"
        events = self.kube.audit(self.started if since is None else since, resource, anywhere=True)
        return [e for e in events if e.user.startswith(prefix)]

    def forbidden(self) -> list[str]:
        """The agents' requests the apiserver refused with 403 (the RBAC was not enough)."""
        return [
            f"{e.user} {e.verb} {e.resource} {e.namespace}/{e.name}"
            for e in self.agent_requests()
            if e.code == 403
        ]

    def log_text(self, node: str) -> str:
        path = self.tmp / f"{node}.log"
        return path.read_text() if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log"))
        )

    def close(self) -> None:
        self.sampler.stop()
        for proxy in self.proxies.values():
            proxy.heal()  # let go of anything a partition still holds
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.agents.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proxy in self.proxies.values():
            proxy.stop()
        # Free their ClusterIPs now: the session's range is small, and the namespace controller
        # removes what is left only some seconds after the test.
        with suppress(client.ApiException):
            self.core.delete_collection_namespaced_service(self.namespace)


# -- the agents' view: sampled l2-announce tables ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """What each running agent announced, read between ``start`` and ``end`` (epoch seconds,
    the audit log's clock)."""

    start: float
    end: float
    tables: dict[str, frozenset[str]]


class Sampler:
    """Reads every agent's l2-announce table in a loop (one snapshot per agent per round)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.samples: list[Sample] = []
        self.overlaps: list[tuple[float, str, list[str]]] = []
        self._ips: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, ips: Iterable[str]) -> None:
        self._ips = set(ips)
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.time()
            tables = {n: frozenset(ips) for n, ips in self.cluster.tables().items()}
            t1 = time.time()
            self.samples.append(Sample(t0, t1, tables))
            for ip in self._ips:
                who = sorted(n for n, t in tables.items() if ip in t)
                if len(who) > 1:
                    self.overlaps.append((t1, ip, who))
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# -- the server's view: who wrote which lease, when ---------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseWrite:
    """One successful write of a lease: when it arrived at the server (epoch seconds, the audit
    log's requestReceivedTimestamp), who sent it, and what it left in the lease."""

    time: float
    writer: str  # logical node name
    verb: str  # create | update | patch | delete
    holder: str  # logical node name; "" when released (or deleted)
    duration: float  # leaseDurationSeconds written


WRITES = ("create", "update", "patch", "delete")


def lease_history(
    cluster: Cluster, lease_names: Iterable[str] | None = None, settle: float = 0.5
) -> dict[str, list[LeaseWrite]]:
    """Per lease of ours (or of ``lease_names``), its successful writes in order, from the audit
    log: each write's Lease as the apiserver left it (the response), and when the request
    arrived. Successful writes of one lease cannot overlap in time (each carries the
    resourceVersion the previous one produced), so their arrival order is their commit order.

    The audit log is written as requests finish; ``settle`` seconds are given for the last ones
    to land."""
    time.sleep(settle)
    history: dict[str, list[LeaseWrite]] = {}
    for e in cluster.audit():
        if e.verb not in WRITES or not 200 <= e.code < 300:
            continue
        obj = e.response or {}
        name = e.name or (obj.get("metadata") or {}).get("name", "")
        if not is_service_lease(name):
            continue
        spec = obj.get("spec") if obj.get("kind") == "Lease" else None
        holder = "" if e.verb == "delete" or spec is None else spec.get("holderIdentity") or ""
        duration = float((spec or {}).get("leaseDurationSeconds") or 0)
        write = LeaseWrite(
            e.time, cluster.node_of(e.user), e.verb, cluster.logical(holder), duration
        )
        history.setdefault(name, []).append(write)
    names = set(history) if lease_names is None else set(lease_names)
    return {name: history.get(name, []) for name in sorted(names)}


@dataclass(frozen=True, slots=True)
class Holding:
    """``node`` held the lease from ``start`` (the write that made it holder arrived) to ``end``
    (its release arrived, or its last renew's arrival + lease duration; inf if still held)."""

    node: str
    start: float
    end: float


def holdings(writes: list[LeaseWrite]) -> list[Holding]:
    out: list[Holding] = []
    current: tuple[str, float, float] | None = None  # holder, start, expiry of its last write
    for w in writes:
        if current is not None and w.holder != current[0]:
            end = w.time if w.writer == current[0] else current[2]  # released, or taken over
            out.append(Holding(current[0], current[1], min(end, current[2])))
            current = None
        if w.holder:
            start = w.time if current is None else current[1]
            current = (w.holder, start, w.time + w.duration)
    if current is not None:
        out.append(Holding(current[0], current[1], float("inf")))
    return out


def takeover(writes: list[LeaseWrite], old: str) -> tuple[LeaseWrite | None, LeaseWrite]:
    """How a lease last left ``old``: the old holder's release just before another node took it
    (None if it did not release, e.g. it crashed), and the write by which the other node took it.
    The last time: with placement a node may have handed it over for balance before."""
    held = False
    last: tuple[LeaseWrite | None, LeaseWrite] | None = None
    for i, w in enumerate(writes):
        if w.holder == old:
            held = True
        elif held and w.holder:
            prev = writes[i - 1]
            last = (prev if prev.writer == old and not prev.holder else None), w
            held = False
    if last is None:
        raise AssertionError(f"the lease never left {old}: {writes}")
    return last


def last_renew(writes: list[LeaseWrite], node: str, before: float) -> LeaseWrite:
    """``node``'s last write as holder that arrived before ``before``."""
    return [w for w in writes if w.holder == node and w.time < before][-1]


def check_leases(history: dict[str, list[LeaseWrite]]) -> list[str]:
    """Safety from the server's view: every write is by its holder (or a release by the previous
    holder), and a lease changes hands only once the previous holder released it or its last
    renew is a full lease duration old (followers count from when they saw that renew, which is
    after it arrived). Returns the violations."""
    problems = []
    for name, writes in history.items():
        prev: LeaseWrite | None = None
        for w in writes:
            before = prev.holder if prev is not None else ""
            if w.verb != "delete" and w.holder and w.writer != w.holder:
                problems.append(f"{name}: {w.writer} wrote holder {w.holder} at {w.time:.3f}")
            if not w.holder and w.verb == "update" and w.writer != before:
                problems.append(f"{name}: {w.writer} released {before}'s lease at {w.time:.3f}")
            if prev is not None and before and w.holder and w.holder != before:
                expiry = prev.time + prev.duration
                if w.time < expiry:
                    problems.append(
                        f"{name}: {w.holder} took it from {before} at {w.time:.3f}, "
                        f"{expiry - w.time:.3f}s before {before}'s lease expired"
                    )
            prev = w
    return problems


def check_announcements(
    samples: list[Sample], history: dict[str, list[LeaseWrite]], ip_of: dict[str, str]
) -> list[str]:
    """The agents' view against the server's: whenever a node's table held a service's IP, the
    node held that service's lease (a holding overlaps the sample's read window). Returns the
    violations (at most one per node and lease)."""
    held = {name: holdings(writes) for name, writes in history.items()}
    problems: dict[tuple[str, str], str] = {}
    for s in samples:
        for node, ips in s.tables.items():
            for name, ip in ip_of.items():
                if ip not in ips or (node, name) in problems:
                    continue
                mine = [h for h in held.get(name, []) if h.node == node]
                if not any(h.start <= s.end and s.start <= h.end for h in mine):
                    problems[(node, name)] = (
                        f"{node} announced {ip} at {s.start:.3f}-{s.end:.3f} without holding "
                        f"{name} (its holdings: {[(h.start, h.end) for h in mine]})"
                    )
    return list(problems.values())


@contextmanager
def running_cluster(kube: Kube, tmp: Path, nodes: int = 3) -> Iterator[Cluster]:
    """A Cluster with Node objects node1..nodeN; on a failure the agents' logs are printed (pytest
    shows them for a failed test), and everything is stopped either way."""
    c = Cluster(kube, tmp)
    try:
        for i in range(1, nodes + 1):
            c.node(f"node{i}")
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        # Whatever a test stopped, the session needs it, and close() needs it first.
        kube.cp.cont("etcd")
        kube.cp.cont("kube-apiserver")
        c.close()
