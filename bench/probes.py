"""What one DaemonSet probe costs: the exec probe (``l2agent --health-probe``) against the agent's
own HTTP endpoints (``/healthz``, ``/readyz`` on ``agent-health-port``).

One real ``l2agent`` (``--no-datapath --devices=lo``, 10 Services announced, default timers)
against a real control plane started on loopback for the run, as in ``bench/agent.py``.

- exec probe: ``l2agent --health-probe`` and ``l2agent --health-probe --liveness``, ``--runs``
  times each, run the way the kubelet runs them (a fresh process with the agent's state
  directory); the figure is the user + system CPU of that process (``getrusage`` of the waited
  child), which the node pays on every probe. The container runtime's own exec work comes on top
  and is not counted.
- HTTP: the agent's CPU (utime + stime from ``/proc/<pid>/stat``) over ``--requests`` requests
  of ``/healthz`` and as many of ``/readyz``, each on a new connection as the kubelet makes
  them, minus the agent's CPU over an idle window of the same length just before; per request.
  The clock tick is 10 ms, so thousands of requests are needed to resolve well under a
  millisecond.

Run: ``.venv/bin/python bench/probes.py`` (``--json``; ``--exec-only`` measures only the exec
probe, for an agent without the HTTP endpoints). Figures go in docs/benchmarks.md, "Probes".
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.agent.cluster import DEFAULT, Cluster, settles  # noqa: E402
from tests.kube import kube_for_test, start_control_plane  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
L2AGENT = str(Path(sys.executable).parent / "l2agent")
SERVICES = 10


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exec_probe(state: Path, extra: list[str], runs: int) -> dict[str, Any]:
    """CPU seconds of each ``l2agent --health-probe`` run (user + system of the child)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2ANNOUNCER_")}
    cpu, codes = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [L2AGENT, "--health-probe", *extra, f"--state-dir={state}"],
            capture_output=True,
            env=env,
            check=False,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        codes.append(done.returncode)
    return {
        "runs": runs,
        "exit_codes": sorted(set(codes)),
        "cpu_ms_median": round(statistics.median(cpu) * 1000, 1),
        "cpu_ms_min": round(min(cpu) * 1000, 1),
        "cpu_ms_max": round(max(cpu) * 1000, 1),
    }


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def http_probe(pid: int, port: int, path: str, requests: int) -> dict[str, Any]:
    """The agent's CPU per request of ``path``, its idle CPU over as long subtracted."""
    statuses: set[int] = set()
    t0, cpu0 = time.monotonic(), _cpu_seconds(pid)
    for _ in range(requests):
        statuses.add(_get(port, path))
    busy_s, busy_cpu = time.monotonic() - t0, _cpu_seconds(pid) - cpu0
    # The same length of time with no request: the agent's own work (health publishing, lease
    # renewals) that the first window also held.
    t1, cpu1 = time.monotonic(), _cpu_seconds(pid)
    time.sleep(busy_s)
    idle_s, idle_cpu = time.monotonic() - t1, _cpu_seconds(pid) - cpu1
    per_request = (busy_cpu - idle_cpu * busy_s / idle_s) / requests
    return {
        "requests": requests,
        "statuses": sorted(statuses),
        "window_s": round(busy_s, 2),
        "agent_cpu_s_in_window": round(busy_cpu, 2),
        "agent_idle_cpu_s_same_length": round(idle_cpu, 2),
        "cpu_ms_per_request": round(per_request * 1000, 3),
    }


def run(runs: int, requests: int, exec_only: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cp = start_control_plane(Path(tmp) / "controlplane")
        try:
            with kube_for_test(cp, Path(tmp)) as kube:
                c = Cluster(kube, Path(tmp))
                try:
                    return _run(c, runs, requests, exec_only)
                finally:
                    c.close()
        finally:
            cp.stop()


def _run(c: Cluster, runs: int, requests: int, exec_only: bool) -> dict[str, Any]:
    c.node("node1")
    ips = set(c.services(SERVICES).values())
    port = _free_port()
    extra = [] if exec_only else [f"--agent-health-port={port}"]
    c.start_agent("node1", DEFAULT, extra)
    settles(lambda: c.announced("node1") == ips, 3.0, 120, "all announced")
    state = c.tmp / "node1"
    pid = c.agents["node1"].pid
    result: dict[str, Any] = {
        "services": SERVICES,
        "exec_readiness": exec_probe(state, [], runs),
        "exec_liveness": exec_probe(state, ["--liveness"], runs),
    }
    if not exec_only:
        result["http_healthz"] = http_probe(pid, port, "/healthz", requests)
        result["http_readyz"] = http_probe(pid, port, "/readyz", requests)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--runs", type=int, default=20, help="exec probe runs (each kind)")
    parser.add_argument("--requests", type=int, default=5000, help="HTTP requests (each path)")
    parser.add_argument("--exec-only", action="store_true", help="only the exec probe")
    args = parser.parse_args()
    r = run(args.runs, args.requests, args.exec_only)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"one agent, --no-datapath, {r['services']} Services announced")
    for kind in ("exec_readiness", "exec_liveness"):
        e = r[kind]
        print(
            f"  {kind}: CPU per probe median {e['cpu_ms_median']} ms "
            f"(min {e['cpu_ms_min']}, max {e['cpu_ms_max']}; {e['runs']} runs, "
            f"exit codes {e['exit_codes']})"
        )
    for kind in ("http_healthz", "http_readyz"):
        if kind in r:
            h = r[kind]
            print(
                f"  {kind}: agent CPU per request {h['cpu_ms_per_request']} ms "
                f"({h['requests']} requests in {h['window_s']} s, statuses {h['statuses']}; "
                f"agent CPU {h['agent_cpu_s_in_window']} s vs "
                f"{h['agent_idle_cpu_s_same_length']} s idle)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
