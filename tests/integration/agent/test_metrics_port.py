"""A metrics port someone else holds (Cilium's agent held the old default, 9962): the agent runs
and announces, the `metrics` health row is Degraded and names the address, one log line says
so; once the port is free, metrics are served without a restart."""

from __future__ import annotations

import socket
import urllib.request

from common.tables.health import HEALTH
from tests.integration.agent.cluster import Cluster, until


def _metrics_row(cluster: Cluster, node: str) -> tuple[str, str] | None:
    for row in cluster.rows(node, HEALTH):
        if row.module == "metrics":
            return row.level, row.message
    return None


def _level(cluster: Cluster, node: str) -> str:
    row = _metrics_row(cluster, node)
    return row[0] if row is not None else ""


def test_a_taken_metrics_port_is_a_degraded_row_not_a_crash_loop(cluster: Cluster) -> None:
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        (ip,) = cluster.services(1).values()
        cluster.start_agent("node1", extra=[f"--prometheus-serve-addr={address}"])
        until(lambda: ip in cluster.announced("node1"), 30, f"{ip} announced")
        until(lambda: _level(cluster, "node1") == "Degraded", 10, "the metrics row Degraded")
        assert _metrics_row(cluster, "node1") == (
            "Degraded",
            f"cannot listen on {address}: address already in use; retrying",
        )
        assert cluster.agents["node1"].poll() is None  # still running
        lines = [line for line in cluster.log_text("node1").splitlines() if "metrics:" in line]
        assert len(lines) == 1, lines
        assert (
            f"metrics: cannot listen on {address}: address already in use; metrics are off "
            in (lines[0])
        )
    finally:
        holder.close()
    until(lambda: _level(cluster, "node1") == "OK", 45, "metrics served")
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        assert "l2announcer_announced" in r.read().decode()
    assert ip in cluster.announced("node1")
