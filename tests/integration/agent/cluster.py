"""A small cluster for agent tests: the API test server, the policy CRD, nodes, Services with load
balancer IPs, and real ``l2agent`` processes, one per node.

The server is the lab's secure one (TLS, bearer tokens, RBAC from its own stored objects, fault
injection, request log). Each agent runs with its own ServiceAccount token
(``system:serviceaccount:kube-system:<node>``), bound to the agent's deployed RBAC
(``deploy/clusterrole.yaml``, ``deploy/role.yaml``), so the request log tells nodes apart and a
partition (``cluster.faults.partition(user_of(node))``) cuts off one node. The test itself talks
to the server as admin.

The agents share this host, so they run with ``--no-datapath`` (no BPF) and ``--devices lo``
(the same selected device on any machine); what they would answer for is their ``l2-announce``
table, read from each one's state database like ``l2dbg`` does.

``Sampler`` reads every agent's table in a loop and keeps the timeline; ``lease_history`` joins
the request log's successful lease writes with the server's change history (who wrote what,
when); ``check_leases`` and ``check_announcements`` judge both (see their docstrings).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from lab.kubeapi.api import ApiConfig
from lab.kubeapi.auth import service_account_username
from lab.kubeapi.security import Security
from lab.state import FAST_TIMERS, REFERENCE_TIMERS
from statedb import ReadOnlyDatabase, Table
from statedb.tables import L2_ANNOUNCE

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "deploy" / "crds" / "ciliuml2announcementpolicies.yaml"
FAST = FAST_TIMERS
DEFAULT = REFERENCE_TIMERS
NAMESPACE = "kube-system"
LEASE_PREFIX = "cilium-l2announce-"
LEASE = LEASE_PREFIX + "default-service-{}"  # the lease of Service default/service-<i>
LEASES_KEY = "coordination.k8s.io/leases"  # the store's key of the leases resource

# What an agent may do: the RBAC it is deployed with (the seed's lease verbs plus watch, in its
# namespace; reading what it reflects, policy status, the announcing-node annotation and events),
# so these tests also prove the shipped rules are enough (no agent request is ever refused).
CLUSTER_ROLE = REPO / "deploy" / "clusterrole.yaml"
ROLE = REPO / "deploy" / "role.yaml"


def until(pred: Callable[[], bool], timeout: float, what: str = "condition") -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


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


def user_of(node: str) -> str:
    """The request log's user name of ``node``'s agent."""
    return service_account_username(NAMESPACE, node)


def node_of(user: str) -> str:
    return user.rsplit(":", 1)[-1]


class Cluster:
    def __init__(self, tmp: Path, api: ApiConfig | None = None) -> None:
        self.tmp = tmp
        self.security = Security.create(tmp / "pki", log_capacity=2_000_000)
        self.log = self.security.request_log
        self.faults = self.security.faults
        self.server = self.security.server(api=api or ApiConfig())
        # Keep every change: lease_history() reads who held which lease from it.
        self.server.store.history_limit = 2_000_000
        self.server.start()
        self.server.api.seed(yaml.safe_load(CRD.read_text()))
        self._seed_roles()
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.security.write_admin_kubeconfig(tmp / "admin", self.server.url)),
            client_configuration=configuration,
        )
        self.api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.kubeconfigs: dict[str, Path] = {}
        self.sampler = Sampler(self)
        self.overlaps = self.sampler.overlaps

    # -- RBAC -----------------------------------------------------------------------------

    def _seed(self, kind: str, name: str, namespace: str = "", **body: Any) -> None:
        metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
        self.server.api.seed(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind,
                "metadata": metadata,
                **body,
            }
        )

    def _seed_roles(self) -> None:
        for path in (CLUSTER_ROLE, ROLE):
            obj = yaml.safe_load(path.read_text())
            self._seed(
                obj["kind"],
                obj["metadata"]["name"],
                obj["metadata"].get("namespace", ""),
                rules=obj["rules"],
            )

    def _bind(self, node: str) -> None:
        subjects = [{"kind": "ServiceAccount", "name": node, "namespace": NAMESPACE}]
        ref = {"apiGroup": "rbac.authorization.k8s.io", "name": "l2announcer"}
        name = f"l2announcer-{node}"
        self._seed(
            "ClusterRoleBinding",
            name,
            roleRef={**ref, "kind": "ClusterRole"},
            subjects=subjects,
        )
        self._seed(
            "RoleBinding", name, NAMESPACE, roleRef={**ref, "kind": "Role"}, subjects=subjects
        )

    def credentials(self, node: str) -> Path:
        """``node``'s kubeconfig: a token of ServiceAccount kube-system/<node>, bound to the
        agent's roles (made on first use)."""
        if node not in self.kubeconfigs:
            token = self.security.authenticator.add_service_account(NAMESPACE, node)
            self._bind(node)
            self.kubeconfigs[node] = self.security.write_kubeconfig(
                self.tmp / f"{node}.kubeconfig", self.server.url, token, node
            )
        return self.kubeconfigs[node]

    # -- objects --------------------------------------------------------------------------

    def node(self, name: str, **labels: str) -> None:
        body = {"metadata": {"name": name, "labels": labels}}
        self.core.create_node(body)  # type: ignore[arg-type]

    def policy(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": "cilium.io/v2alpha1",
            "kind": "CiliumL2AnnouncementPolicy",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.custom.create_cluster_custom_object(
            "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", body
        )

    def service(self, name: str, ip: str, namespace: str = "default", **labels: str) -> None:
        self.core.create_namespaced_service(
            namespace,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            },  # type: ignore[arg-type]
        )
        self.core.patch_namespaced_service_status(
            name, namespace, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
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
            ip_of[LEASE.format(i)] = ip(i)
        return ip_of

    def holder(self, lease: str) -> str:
        try:
            got = self.coordination.read_namespaced_lease(lease, NAMESPACE)
        except client.ApiException:
            return ""
        return str(getattr(got.spec, "holder_identity", "") or "")

    # -- agents ---------------------------------------------------------------------------

    def start_agent(
        self, node: str, timers: tuple[str, str, str] = FAST, extra: Sequence[str] = ()
    ) -> None:
        state = self.tmp / node
        state.mkdir(exist_ok=True)
        args = [
            str(Path(sys.executable).parent / "l2agent"),
            "--enable-l2-announcements",
            f"--kubeconfig={self.credentials(node)}",
            f"--node-name={node}",
            f"--state-dir={state}",
            "--devices=lo",
            f"--l2-announcements-lease-duration={timers[0]}",
            f"--l2-announcements-renew-deadline={timers[1]}",
            f"--l2-announcements-retry-period={timers[2]}",
            "--no-datapath",
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

    def log_text(self, node: str) -> str:
        path = self.tmp / f"{node}.log"
        return path.read_text() if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log"))
        )

    def close(self) -> None:
        self.sampler.stop()
        self.faults.clear()  # let go of anything a partition still holds
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.agents.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.api.close()  # type: ignore[no-untyped-call]
        self.server.stop()


# -- the agents' view: sampled l2-announce tables ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """What each running agent announced, read between ``start`` and ``end`` (monotonic)."""

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
            t0 = time.monotonic()
            tables = {n: frozenset(ips) for n, ips in self.cluster.tables().items()}
            t1 = time.monotonic()
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
    """One successful write of a lease: when it arrived at the server (monotonic, from the request
    log), who sent it, and what it left in the lease."""

    time: float
    writer: str  # node name
    verb: str  # create | update | delete
    holder: str  # "" when released (or deleted)
    duration: float  # leaseDurationSeconds written


def lease_history(
    cluster: Cluster, lease_names: Iterable[str] | None = None
) -> dict[str, list[LeaseWrite]]:
    """Per lease of ours (or of ``lease_names``), its successful writes in order.

    Updates and deletes name the lease in their URL, so the request log gives their arrival
    times directly; a create's URL has no name, so creates are paired with the store's ADDED
    changes per writer, in order (a lease's creator is its first holder). What each write left in
    the lease (holder, duration) comes from the store's change history, in revision order;
    successful writes of one lease cannot overlap in time (each carries the resourceVersion the
    previous one produced), so their arrival order is their commit order."""
    store = cluster.server.store
    changes: dict[str, list[Any]] = {}
    for ch in store.changes_after(store.compacted_rv, LEASES_KEY):
        name = ch.obj["metadata"]["name"]
        if name.startswith(LEASE_PREFIX):
            changes.setdefault(name, []).append(ch)
    records = cluster.log.query(resource="leases", verb=("create", "update", "delete"))
    ok = [r for r in records if 200 <= r.status < 300 and r.info.namespace == NAMESPACE]

    creates: dict[str, list[float]] = {}
    for r in sorted((r for r in ok if r.info.verb == "create"), key=lambda r: r.time):
        creates.setdefault(node_of(r.user), []).append(r.time)
    added: dict[str, list[tuple[int, str]]] = {}
    for name, chs in changes.items():
        for ch in chs:
            if ch.type == "ADDED":
                holder = (ch.obj.get("spec") or {}).get("holderIdentity") or ""
                added.setdefault(holder, []).append((ch.rv, name))
    create_time: dict[tuple[str, int], float] = {}
    for creator, adds in added.items():
        times = creates.get(creator, [])
        assert len(times) == len(adds), f"{creator}: {len(times)} creates, {len(adds)} ADDED"
        for (rv, name), t in zip(sorted(adds), times, strict=True):
            create_time[(name, rv)] = t

    history: dict[str, list[LeaseWrite]] = {}
    names = set(changes) if lease_names is None else set(lease_names)
    for name in sorted(names):
        chs = changes.get(name, [])
        named = sorted(
            (r for r in ok if r.info.name == name and r.info.verb != "create"),
            key=lambda r: r.time,
        )
        later = [ch for ch in chs if ch.type != "ADDED"]
        assert len(named) == len(later), f"{name}: {len(named)} logged writes, {len(later)} changes"
        by_rv = {ch.rv: r for ch, r in zip(later, named, strict=True)}
        writes = []
        for ch in chs:
            spec = ch.obj.get("spec") or {}
            holder = "" if ch.type == "DELETED" else spec.get("holderIdentity") or ""
            duration = float(spec.get("leaseDurationSeconds") or 0)
            if ch.type == "ADDED":
                t = create_time[(name, ch.rv)]
                writes.append(LeaseWrite(t, holder, "create", holder, duration))
            else:
                r = by_rv[ch.rv]
                writes.append(LeaseWrite(r.time, node_of(r.user), r.info.verb, holder, duration))
        history[name] = writes
    return history


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
    """How a lease left ``old``: the old holder's release just before another node took it (None
    if it did not release, e.g. it crashed), and the write by which the other node took it."""
    held = False
    for i, w in enumerate(writes):
        if w.holder == old:
            held = True
        elif held and w.holder:
            prev = writes[i - 1]
            return (prev if prev.writer == old and not prev.holder else None), w
    raise AssertionError(f"the lease never left {old}: {writes}")


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
def running_cluster(tmp: Path, nodes: int = 3, api: ApiConfig | None = None) -> Iterator[Cluster]:
    """A Cluster with Node objects node1..nodeN; on a failure the agents' logs are printed (pytest
    shows them for a failed test), and everything is stopped either way."""
    c = Cluster(tmp, api)
    try:
        for i in range(1, nodes + 1):
            c.node(f"node{i}", **{"kubernetes.io/hostname": f"node{i}"})
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.close()
