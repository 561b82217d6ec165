"""Benchmarks of the node agent (issue 5): its cost at steady state and how fast it announces.

One real ``l2agent`` process (``--no-datapath --devices=lo``, default timers 15 s / 5 s / 2 s)
against a real control plane (etcd, kube-apiserver, kube-controller-manager;
``lab/controlplane.py``) that this benchmark starts on loopback and stops, with its own
ServiceAccount token and the shipped RBAC, as in the agent integration tests
(``tests/integration/agent/cluster.py``). The Services' ClusterIPs (allocated, never configured
anywhere) come from a /20 of the benchmarking range, room for the 1,000 Services.

- CPU (user + system seconds per minute, from ``/proc/<pid>/stat``, and per lease request) and
  RSS (``VmRSS``) of the agent at steady state (every lease held, every Service announced,
  nothing but lease renewals going to the API server), with 100 and with 1,000 Services; the
  agent's requests, by verb, resource and status, from the apiserver's audit log. At steady state
  the agent renews each lease once per retry period (2 s), so 1,000 Services are 500 lease
  renewals per second; its client rate limit is raised to match (``k8s-client-qps``). The
  apiserver and etcd run on the same cores: where they cannot serve that rate, leases are lost
  in the window and the run says it was not steady.
- Time from a Service getting its load balancer IP (the status update that sets it is sent) to
  its ``l2-announce`` entry in the agent's state database (median, p99, max), for Services
  created one at a time next to the 100 already announced. The path: the service watch, the
  ``services`` table, policy selection, a lease create and its answer, the entry.

Run: ``.venv/bin/python bench/agent.py`` (``--json`` for machine-readable output, ``--quick`` for
a short run). Figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.tables import L2_ANNOUNCE  # noqa: E402
from lab.controlplane import ControlPlane  # noqa: E402
from statedb import ReadOnlyDatabase  # noqa: E402
from tests.integration.agent.cluster import (  # noqa: E402
    DEFAULT,
    REQUESTS_ONLY_AUDIT,
    Cluster,
    settles,
)
from tests.kube import kube_for_test, start_control_plane  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
RATE = ("--k8s-client-qps=1000", "--k8s-client-burst=2000")
SERVICE_CIDR = "198.19.0.0/20"  # benchmarking range, clear of the VIPs below


def _ip(i: int) -> str:
    return f"198.18.{i // 250}.{i % 250 + 1}"  # the benchmarking range, 198.18.0.0/15


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def steady_state(cp: ControlPlane, services: int, window: float, workdir: Path) -> dict[str, Any]:
    with kube_for_test(cp, workdir) as kube:
        c = Cluster(kube, workdir)
        try:
            return _steady_state(c, services, window)
        finally:
            c.close()


def _steady_state(c: Cluster, services: int, window: float) -> dict[str, Any]:
    c.node("node1")
    c.policy("bench", {"loadBalancerIPs": True, "interfaces": ["^lo$"]})
    for i in range(services):
        c.service(f"svc-{i}", _ip(i))
    ips = {_ip(i) for i in range(services)}
    started = time.monotonic()
    c.start_agent("node1", DEFAULT, RATE)
    settles(lambda: c.announced("node1") == ips, 5.0, 300, "all announced")
    settled = time.monotonic() - started
    # Steady: only lease renewals left (the Announcing events of the first acquisitions, with the
    # Service reads they need, go out on their own thread, and may still be catching up).
    settles(
        lambda: all(e.resource == "leases" for e in c.agent_requests(time.time() - 3.0)),
        3.0,
        300,
        "only lease traffic",
    )
    pid = c.agents["node1"].pid
    log0 = len(c.log_text("node1"))
    cpu0, t0, wall0 = _cpu_seconds(pid), time.monotonic(), time.time()
    rss = []
    while time.monotonic() - t0 < window:
        time.sleep(1.0)
        rss.append(_rss_mib(pid))
    cpu1, t1, wall1 = _cpu_seconds(pid), time.monotonic(), time.time()
    time.sleep(0.5)  # the window's last requests reach the audit log
    records = [e for e in c.agent_requests(wall0) if e.time < wall1]
    mix = Counter(f"{e.verb} {e.resource} {e.code}" for e in records)
    leases = sum(1 for e in records if e.resource == "leases")
    result: dict[str, Any] = {
        "services": services,
        "settled_s": round(settled, 1),
        "cpu_s_per_min": round((cpu1 - cpu0) / (t1 - t0) * 60, 2),
        "cpu_ms_per_lease_request": round((cpu1 - cpu0) / max(1, leases) * 1000, 2),
        # Not a steady state if the agent could not renew every lease in time.
        "leases_lost": c.log_text("node1")[log0:].count("Stopped leading"),
        "rss_mib": round(max(rss), 1),
        "api_requests_per_s": round(len(records) / (wall1 - wall0), 1),
        "api_requests": dict(mix.most_common()),
    }
    if services == 100:
        result["announce_latency"] = announce_latency(c, services, 50)
    return result


def announce_latency(c: Cluster, first: int, count: int) -> dict[str, float]:
    """Create ``count`` Services one at a time; time each from its status update to its entry."""
    ro = ReadOnlyDatabase.open(c.tmp / "node1" / "statedb.sqlite")
    took = []
    try:
        for i in range(first, first + count):
            name, ip = f"svc-{i}", _ip(i)
            c.core.create_namespaced_service(
                c.namespace,
                {
                    "metadata": {"name": name},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                },  # type: ignore[arg-type]
            )
            time.sleep(0.2)  # the Service exists without an IP first, as with a real LB IPAM
            t0 = time.monotonic()
            c.core.patch_namespaced_service_status(
                name, c.namespace, {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
            )
            seen = -1
            while time.monotonic() - t0 < 30:
                version = ro.data_version()
                if version != seen:
                    seen = version
                    with ro.snapshot() as snap:
                        if any(e.ip == ip for e in snap.rows(L2_ANNOUNCE)):
                            took.append(time.monotonic() - t0)
                            break
                time.sleep(0.001)
            else:
                raise RuntimeError(f"{ip} was not announced within 30 s")
    finally:
        ro.close()
    return {
        "count": count,
        "median_ms": round(statistics.median(took) * 1000, 1),
        "p99_ms": round(_pct(took, 99) * 1000, 1),
        "max_ms": round(max(took) * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="10 s windows instead of 60 s")
    args = parser.parse_args()
    window = 10.0 if args.quick else 60.0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cp = start_control_plane(
            Path(tmp) / "controlplane",
            (f"--service-cluster-ip-range={SERVICE_CIDR}",),
            REQUESTS_ONLY_AUDIT,
        )
        try:
            for services in (100, 1000):
                workdir = Path(tmp) / str(services)
                workdir.mkdir()
                results.append(steady_state(cp, services, window, workdir))
        finally:
            cp.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"agent at steady state (1 agent, --no-datapath, timers 15s/5s/2s, {window:.0f} s window)"
    )
    for r in results:
        print(
            f"  {r['services']:>5} services: CPU {r['cpu_s_per_min']:.2f} s/min "
            f"({r['cpu_s_per_min'] / 60 * 100:.1f}% of a core), RSS {r['rss_mib']:.1f} MiB, "
            f"{r['api_requests_per_s']:.1f} API requests/s, settled in {r['settled_s']:.1f} s, "
            f"{r['cpu_ms_per_lease_request']:.2f} ms of CPU per lease request"
        )
        if r["leases_lost"]:
            print(f"        NOT STEADY: {r['leases_lost']} leases lost in the window")
        print(f"        requests in the window (verb resource status: count): {r['api_requests']}")
    lat = results[0]["announce_latency"]
    print(
        f"Service LB IP set -> l2-announce entry, {lat['count']} Services one by one: "
        f"median {lat['median_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, max {lat['max_ms']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
