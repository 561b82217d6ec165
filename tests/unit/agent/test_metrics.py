"""The metrics: series from the state database and the BPF counters, counters from hooks."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client import generate_latest

from agent.leases.api import Campaign, CampaignState
from agent.metrics import Metrics, MetricsServer
from agent.runtime import Backoff, Level
from common.tables import CONFLICTS, DEVICES, HEALTH, L2_ANNOUNCE, L2_FENCE
from common.tables.conflicts import Conflict
from common.tables.devices import Device
from common.tables.fence import Fence
from common.tables.health import Health
from common.tables.l2_announce import L2AnnounceEntry, Origin
from statedb import Database, Status, StatusKind


def test_series_from_state_bpf_counters_and_hooks() -> None:
    db = Database.open(None, [CONFLICTS, DEVICES, HEALTH, L2_ANNOUNCE, L2_FENCE])
    with db.write_txn(CONFLICTS, DEVICES, HEALTH, L2_ANNOUNCE, L2_FENCE) as txn:
        txn.upsert(DEVICES, Device(2, "eth0", selected=True))
        txn.upsert(L2_FENCE, Fence("eth1", detail="eth1 is down since 19:15:57"))
        txn.upsert(CONFLICTS, Conflict("198.51.100.10", "eth0", "02:00:00:00:00:99"))
        txn.upsert(HEALTH, Health("devices", "OK", "", 1.0, 1.0))
        txn.upsert(
            L2_ANNOUNCE,
            L2AnnounceEntry("198.51.100.10", "eth0", (Origin("default", "red"),),
                            Status(StatusKind.DONE)),
        )  # fmt: skip
        txn.upsert(
            L2_ANNOUNCE,
            L2AnnounceEntry("198.51.100.11", "eth0", (Origin("default", "blue"),),
                            Status(StatusKind.ERROR, "garp failed")),
        )  # fmt: skip
    m = Metrics()
    m.watch_state(
        db,
        responder_items=lambda: [("198.51.100.10", 2, 41)],
        campaigns=lambda: {
            "a": Campaign(CampaignState.LEADING),
            "b": Campaign(CampaignState.FOLLOWING, "node1"),
            "c": Campaign(CampaignState.FOLLOWING, "node3"),
        },
    )
    m.on_leadership("a", True, "acquired")
    m.on_takeover("a", 0.12)
    m.on_request("PUT", "200")
    m.on_throttle(1.5)
    m.on_garp("198.51.100.10", "eth0")
    m.on_conflict_packet("198.51.100.10", "eth0")
    m.on_conflict_defence("198.51.100.10", "eth0")
    text = generate_latest(m.registry).decode()
    for line in (
        'l2announcer_arp_responses_sent_total{interface="eth0",ip="198.51.100.10"} 41.0',
        'l2announcer_announced{interface="eth0",ip="198.51.100.10",namespace="default",service="red"} 1.0',
        'l2announcer_reconcile_errors{reconciler="l2-responder"} 1.0',
        'l2announcer_leases{state="held"} 1.0',
        'l2announcer_leases{state="followed"} 2.0',
        'l2announcer_lease_transitions_total{event="acquired"} 1.0',
        "l2announcer_takeover_latency_seconds_count 1.0",
        'l2announcer_takeover_latency_seconds_bucket{le="0.25"} 1.0',
        'l2announcer_k8s_requests_total{code="200",verb="PUT"} 1.0',
        "l2announcer_k8s_client_throttled_requests_total 1.0",
        "l2announcer_k8s_client_throttled_seconds_total 1.5",
        'l2announcer_gratuitous_arp_sent_total{interface="eth0",ip="198.51.100.10"} 1.0',
        'l2announcer_module_health{level="OK",module="devices"} 1.0',
        'l2announcer_vip_conflicts{interface="eth0",ip="198.51.100.10"} 1.0',
        'l2announcer_fenced{interface="eth1",ip="",kind="link",reason="interface-down"} 1.0',
        'l2announcer_vip_conflict_packets_total{interface="eth0",ip="198.51.100.10"} 1.0',
        'l2announcer_vip_conflict_defences_total{interface="eth0",ip="198.51.100.10"} 1.0',
    ):
        assert line in text, line
    port = m.serve("127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            served = r.read().decode()
        assert "l2announcer_arp_responses_sent_total" in served
    finally:
        m.stop()
        db.close()


def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_taken_port_is_a_degraded_row_naming_it_and_one_log_line_not_an_exit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    db = Database.open(None, [CONFLICTS, DEVICES, HEALTH, L2_ANNOUNCE, L2_FENCE])
    m = Metrics()
    m.watch_state(db)
    server = MetricsServer(m, f"127.0.0.1:{port}", retry=Backoff(first=0.01, cap=0.01))
    try:
        with caplog.at_level(logging.INFO, logger="l2announcer.metrics"):
            server.start()
            _until(lambda: server.health.current().level is Level.DEGRADED, "Degraded")
            assert server.health.current().message == (
                f"cannot listen on 127.0.0.1:{port}: address already in use; retrying"
            )
            _until(lambda: server.failures >= 3, "retries")
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert [r.getMessage() for r in warnings] == [
                f"metrics: cannot listen on 127.0.0.1:{port}: address already in use; metrics "
                "are off until it is free (retrying every 0.01s at most)"
            ]
            holder.close()  # freed: the next attempt listens
            _until(lambda: server.health.current().is_ok, "OK once the port is free")
            assert server.port == port
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                assert "l2announcer_module_health" in r.read().decode()
    finally:
        holder.close()
        server.stop()
        db.close()
    assert server.health.current().level is Level.STOPPED
