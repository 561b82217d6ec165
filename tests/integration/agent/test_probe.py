"""l2agent --health-probe against a running agent: readiness and liveness (the DaemonSet's probes)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.agent.cluster import Cluster, until


def probe(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    l2agent = str(Path(sys.executable).parent / "l2agent")
    return subprocess.run(
        [l2agent, "--health-probe", *extra, f"--state-dir={state}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_probes_follow_the_agents_health(cluster: Cluster, tmp_path: Path) -> None:
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
