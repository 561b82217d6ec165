"""A small cluster for agent tests: the API test server (with a request log), the policy CRD,
nodes, Services with load balancer IPs, and real ``l2agent`` processes, one per node.

The agents share this host, so they run with ``--no-datapath`` (no BPF) and ``--devices lo``
(the same selected device on any machine); what they would answer for is their ``l2-announce``
table, read from each one's state database like ``l2dbg`` does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from lab.kubeapi.pipeline import Pipeline
from lab.kubeapi.requestlog import MemoryRequestLog
from lab.kubeapi.server import KubeApiServer
from statedb import ReadOnlyDatabase, StateDBError
from statedb.tables import L2_ANNOUNCE

REPO = Path(__file__).resolve().parents[3]
CRD = REPO / "deploy" / "crds" / "ciliuml2announcementpolicies.yaml"
FAST = ("3s", "1s", "200ms")  # the seed's fast-failover example
DEFAULT = ("15s", "5s", "2s")


def until(pred: Callable[[], bool], timeout: float, what: str = "condition") -> float:
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.log = MemoryRequestLog()
        self.server = KubeApiServer(Pipeline(request_log=self.log)).start()
        self.server.api.seed(yaml.safe_load(CRD.read_text()))
        configuration = client.Configuration()
        configuration.host = self.server.url
        self.api = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "lab", "cluster": {"server": self.server.url}}],
                    "users": [{"name": "admin", "user": {"token": "admin"}}],
                    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
                    "current-context": "lab",
                }
            )
        )
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.overlaps: list[tuple[float, str, list[str]]] = []
        self._watching = threading.Event()

    # -- objects --------------------------------------------------------------------------

    def node(self, name: str, **labels: str) -> None:
        self.core.create_node({"metadata": {"name": name, "labels": labels}})

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
            },
        )
        self.core.patch_namespaced_service_status(
            name, namespace, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
        )

    def holder(self, lease: str) -> str:
        try:
            got = self.coordination.read_namespaced_lease(lease, "kube-system")
        except client.ApiException:
            return ""
        return str(got.spec.holder_identity or "")

    # -- agents ---------------------------------------------------------------------------

    def start_agent(self, node: str, timers: tuple[str, str, str] = FAST) -> None:
        state = self.tmp / node
        state.mkdir(exist_ok=True)
        args = [
            str(Path(sys.executable).parent / "l2agent"),
            "--enable-l2-announcements",
            f"--kubeconfig={self.kubeconfig}",
            f"--node-name={node}",
            f"--state-dir={state}",
            "--devices=lo",
            f"--l2-announcements-lease-duration={timers[0]}",
            f"--l2-announcements-renew-deadline={timers[1]}",
            f"--l2-announcements-retry-period={timers[2]}",
            "--no-datapath",
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
        path = self.tmp / node / "statedb.sqlite"
        if proc is None or proc.poll() is not None or not path.exists():
            return set()
        try:
            with ReadOnlyDatabase.open(path) as ro, ro.snapshot() as snap:
                return {e.ip for e in snap.rows(L2_ANNOUNCE)}
        except (StateDBError, Exception):
            return set()

    def announcers(self, ip: str) -> list[str]:
        return [n for n in self.agents if ip in self.announced(n)]

    def watch_for_overlaps(self, ips: list[str]) -> None:
        """Sample every agent's table until stopped; record any IP announced by two nodes."""

        def run() -> None:
            while not self._watching.is_set():
                for ip in ips:
                    who = self.announcers(ip)
                    if len(who) > 1:
                        self.overlaps.append((time.monotonic(), ip, who))
                time.sleep(0.01)

        threading.Thread(target=run, daemon=True).start()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log"))
        )

    def close(self) -> None:
        self._watching.set()
        for proc in self.agents.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.agents.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.api.close()
        self.server.stop()
