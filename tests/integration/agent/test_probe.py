"""The agent's probes on the real apiserver: ``/healthz`` and ``/readyz``, which the DaemonSet's
probes ask the running agent over HTTP, and ``l2agent --health-probe``, the same rules read
from the state database."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common.tables.health import HEALTH
from tests.integration.agent.cluster import Cluster, until


def probe(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    l2agent = str(Path(sys.executable).parent / "l2agent")
    return subprocess.run(
        [l2agent, "--health-probe", *extra, f"--state-dir={state}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of ``GET path``; (0, reason) when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except OSError as e:
        return 0, str(e)
    finally:
        conn.close()


def health_port(cluster: Cluster, node: str) -> int:
    """The port ``node``'s agent took (it runs with agent-health-port 0), from its health row;
    0 until that row is published."""
    for row in cluster.rows(node, HEALTH):
        if row.module == "health-server":
            found = re.search(r"127\.0\.0\.1:(\d+)", row.message)
            return int(found.group(1)) if found else 0
    return 0


def test_http_probes_follow_the_agents_health(cluster: Cluster) -> None:
    cluster.policy("policy1", {"loadBalancerIPs": True})
    cluster.start_agent("node1", proxied=True)
    until(lambda: health_port(cluster, "node1") > 0, 30, "the health server's row")
    port = health_port(cluster, "node1")
    until(lambda: get(port, "/readyz") == (200, "ok\n"), 30, "ready")
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/metrics")[0] == 404

    # The API server out of reach: the modules that need it say so and the agent is not ready,
    # but it is alive: restarting it would only withdraw what it announces.
    cluster.proxies["node1"].reset()
    until(lambda: get(port, "/readyz")[0] == 503, 30, "not ready while the API is unreachable")
    status, body = get(port, "/readyz")
    lines = body.splitlines()
    assert status == 503 and lines, body
    assert all(re.match(r"[\w:.-]+: (Degraded|Starting)", line) for line in lines), body
    assert any(line.startswith("reflector:") for line in lines), body
    assert get(port, "/healthz") == (200, "ok\n")
    # The command line reads the same verdict from the state database.
    cli = probe(cluster.tmp / "node1")
    assert cli.returncode == 1 and cli.stderr.strip(), cli.stderr

    cluster.proxies["node1"].heal()
    until(lambda: get(port, "/readyz") == (200, "ok\n"), 60, "ready again")

    cluster.signal("node1", signal.SIGTERM)
    cluster.agents["node1"].wait(timeout=10)
    assert get(port, "/healthz")[0] == 0, "the port is closed with the agent"


def test_a_busy_health_port_stops_the_start_with_one_line(cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster.start_agent("node1", extra=[f"--agent-health-port={port}"])
        assert cluster.agents["node1"].wait(timeout=60) == 1
    log = cluster.log_text("node1")
    expected = (
        f"l2agent: starting health-server: agent-health-port {port}: 127.0.0.1:{port} is "
        "already in use by another process; set agent-health-port (chart: healthPort) to a free "
        "port, the probes follow it\n"
    )
    assert expected in log, log
    assert "Traceback" not in log, log


def test_the_command_line_probe_follows_the_agents_health(cluster: Cluster, tmp_path: Path) -> None:
    assert probe(tmp_path / "none").returncode == 2
    cluster.policy("policy1", {"loadBalancerIPs": True})
    cluster.start_agent("node1")
    state = cluster.tmp / "node1"
    until(lambda: probe(state).returncode == 0, 30, "ready")
    assert probe(state, "--liveness").returncode == 0
    cluster.signal("node1", signal.SIGKILL)
    cluster.agents["node1"].wait(timeout=5)
    killed = time.monotonic()
    # The database outlives the process; its heartbeat ages out after 10 s.
    until(lambda: probe(state, "--liveness").returncode == 1, 20, "liveness failing")
    assert time.monotonic() - killed >= 9
    dead = probe(state, "--liveness")
    assert dead.stderr.startswith("l2agent: no heartbeat from the agent for 10s (last ")
