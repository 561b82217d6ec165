"""The agent's wiring: every module built in ``__init__`` (nothing runs until start), appended to
the lifecycle in dependency order, each with one health row; the health publisher's rules."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.agent import Agent
from agent.config import Config
from agent.health_publisher import HealthPublisher
from agent.runtime import FakeClock, Health, HealthRegistry
from common.tables.health import HEALTH, HEARTBEAT
from statedb import Database


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Agent]:
    import kubernetes

    def if_nametoindex(name: str) -> int:
        if name == "eth0":
            return 7
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr(socket, "if_nametoindex", if_nametoindex)
    config = Config(
        state_dir=str(tmp_path),
        node_name="node1",
        enable_l2_announcements=True,
        enable_l2_pod_announcements=True,
        l2_pod_announcements_interface="eth0",
        prometheus_serve_addr="127.0.0.1:0",
    )
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    a = Agent(config, {}, datapath=True, api_client=api)
    yield a
    a.db.close()


def test_every_module_is_built_in_init_and_appended_in_dependency_order(agent: Agent) -> None:
    assert agent.lifecycle.names == [
        "health-server",  # first: the probes get an answer while the rest starts
        "database",
        "devices",
        "lease-api",
        "reflector:services",
        "reflector:nodes",
        "reflector:ciliuml2announcementpolicies.cilium.io",
        "reflector:leases",
        "reflector:endpointslices.discovery.k8s.io",
        "link-fence",
        "policy-status",
        "service-status",
        "service-conditions",
        "announced-services",
        "datapath",
        "datapath-liveness",
        "garp-sender",  # built once, for the responder and the pod announcer
        "solicited-node-groups",
        "l2-responder",
        "device-sync",
        "datapath-verifier",
        "conflict-reports",
        "conflicts",  # after the responder: it watches what is programmed
        "node-liveness",
        "elector",
        "l2-announcer",
        "lease-gc",
        "reflector:pods",
        "pod-announcer",
        "metrics",
        "health",
    ]


def test_one_health_row_per_module_and_job(agent: Agent) -> None:
    assert sorted(agent.health.snapshot()) == sorted(
        [
            "health-server",
            "api-usage",
            "devices",
            "reflector:services",
            "reflector:nodes",
            "reflector:ciliuml2announcementpolicies.cilium.io",
            "reflector:leases",
            "reflector:endpointslices.discovery.k8s.io",
            "reflector:pods",
            "link-fence",
            "policy-status",
            "service-status",
            "service-conditions",
            "announced-services",
            "datapath",
            "garp-sender",
            "l2-responder",
            "device-sync",
            "datapath-verifier",
            "conflict-reports",
            "conflicts",
            "conflicts-tables",
            "node-liveness",
            "elector",
            "l2-announcer",
            "lease-gc",
            "pod-announcer",
            "metrics",
        ]
    )


def test_an_unknown_pod_announcement_interface_fails_construction_and_closes_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kubernetes

    def if_nametoindex(name: str) -> int:
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    monkeypatch.setattr(socket, "if_nametoindex", if_nametoindex)
    closed: list[bool] = []
    real_close = Database.close

    def close(db: Database) -> None:
        closed.append(True)
        real_close(db)

    monkeypatch.setattr(Database, "close", close)
    config = Config(
        state_dir=str(tmp_path),
        enable_l2_pod_announcements=True,
        l2_pod_announcements_interface="bond7",
    )
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    with pytest.raises(RuntimeError, match='interface "bond7" not found'):
        Agent(config, {}, datapath=False, api_client=api)
    assert closed == [True]


def _rows(db: Database) -> dict[str, tuple[str, str, float, float]]:
    with db.read_txn() as r:
        return {h.module: (h.level, h.message, h.since, h.updated) for h in r.all(HEALTH)}


def test_the_publisher_writes_levels_as_text_and_since_moves_only_with_the_level() -> None:
    clock = FakeClock(now=1000.0)
    registry = HealthRegistry()
    elector = registry.reporter("elector")
    elector.ok("leading 0 of 0 lease(s)")
    with Database.open(None, [HEALTH]) as db:
        publisher = HealthPublisher(db, registry, interval=1.0, clock=clock)
        publisher.publish()
        rows = _rows(db)
        assert rows["elector"] == ("OK", "leading 0 of 0 lease(s)", 1000.0, 1000.0)
        assert rows[HEARTBEAT] == ("OK", f"pid {os.getpid()}", 1000.0, 1000.0)

        clock.advance(1)
        elector.ok("leading 1 of 1 lease(s)")  # same level: since stays
        publisher.publish()
        assert _rows(db)["elector"] == ("OK", "leading 1 of 1 lease(s)", 1000.0, 1001.0)

        clock.advance(1)
        elector.degraded("lease churn")  # the level changed: since moves
        publisher.publish()
        assert _rows(db)["elector"] == ("Degraded", "lease churn", 1002.0, 1002.0)

        clock.advance(1)
        publisher.publish()  # unchanged: not rewritten; the heartbeat is, every time
        rows = _rows(db)
        assert rows["elector"] == ("Degraded", "lease churn", 1002.0, 1002.0)
        assert rows[HEARTBEAT][2:] == (1000.0, 1003.0)


def test_the_publisher_spells_every_level_as_the_probes_read_it() -> None:
    registry = HealthRegistry()
    for name, health in {
        "a": Health.ok(),
        "b": Health.starting("waiting"),
        "c": Health.degraded("down"),
        "d": Health.stopped(),
    }.items():
        registry.reporter(name).set(health)
    with Database.open(None, [HEALTH]) as db:
        HealthPublisher(db, registry, interval=1.0, clock=FakeClock()).publish()
        levels = {m: row[0] for m, row in _rows(db).items()}
    assert levels == {"a": "OK", "b": "Starting", "c": "Degraded", "d": "Stopped", HEARTBEAT: "OK"}


def test_docs_list_every_health_row(agent: Agent) -> None:
    doc = (Path(__file__).parents[3] / "docs" / "l2dbg.md").read_text()
    rows = [n for n in agent.health.snapshot() if not n.startswith("reflector:")]
    missing = [n for n in [*rows, HEARTBEAT, "reflector:<kind>"] if f"`{n}`" not in doc]
    assert not missing, f"docs/l2dbg.md (l2dbg status) does not list the health rows {missing}"


def test_economy_mode_gates_the_datapath_stamp_on_the_heartbeat(tmp_path: Path) -> None:
    import kubernetes

    config = Config(
        state_dir=str(tmp_path),
        node_name="node1",
        enable_l2_announcements=True,
        l2_announcements_lease_mode="economy",
    )
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    a = Agent(config, {}, datapath=True, api_client=api)
    try:
        assert a.elector is not None and a.elector.economy
        assert a.elector.heartbeat == "l2announcer-node-node1"
        assert a.datapath is not None
        gate = a.datapath._liveness_gate
        assert gate is not None and gate() is False  # no heartbeat renewed yet
    finally:
        a.db.close()
    per_service = Agent(
        Config(state_dir=str(tmp_path / "p"), node_name="node1", enable_l2_announcements=True),
        {},
        datapath=True,
        api_client=api,
    )
    try:
        assert per_service.elector is not None and not per_service.elector.economy
        assert per_service.datapath is not None and per_service.datapath._liveness_gate is None
    finally:
        per_service.db.close()
