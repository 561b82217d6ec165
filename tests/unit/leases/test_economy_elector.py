"""The elector in lease economy mode, with real threads and an in-memory API: Service leases are
written only when their holder changes, the heartbeat carries them, and a follower takes over
only after fencing the holder's expired heartbeat, once the holder has stopped leading."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.leases.election import Timings
from agent.leases.elector import Elector
from common.leases import heartbeat_name
from tests.unit.leases.fake_api import FakeLeaseAPI
from tests.unit.leases.test_elector import Recorder

T = Timings(lease_duration=2.0, renew_deadline=0.6, retry_period=0.2)
SVCS = [f"cilium-l2announce-default-svc{i}" for i in range(5)]


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


Make = Callable[[str], tuple[Elector, Recorder]]


@pytest.fixture
def api() -> FakeLeaseAPI:
    return FakeLeaseAPI()


@pytest.fixture
def make(api: FakeLeaseAPI) -> Iterator[Make]:
    made: list[Elector] = []

    def make(identity: str) -> tuple[Elector, Recorder]:
        rec = Recorder()
        e = Elector(
            api.client(identity), identity, T, rec, heartbeat=heartbeat_name(identity), economy=True
        )
        api.observers.append(e.observe)  # the fake watch
        e.start()
        made.append(e)
        return e, rec

    yield make
    for e in made:
        e.stop(release_timeout=0.5)


def test_leases_are_written_once_and_the_heartbeat_carries_them(
    make: Make, api: FakeLeaseAPI
) -> None:
    a, _ = make("node1")
    _wait(a.heartbeat_alive)
    for s in SVCS:
        a.want(s, True)
    _wait(lambda: a.leading() == set(SVCS))
    b, _ = make("node2")
    for s in SVCS:
        b.want(s, True)
    time.sleep(2 * T.retry_period)  # node2 asks for each lease once (no watch event yet)
    calls = len(api.calls)
    time.sleep(8 * T.retry_period)
    later = api.calls[calls:]
    assert {name for _, name, _ in later} == {heartbeat_name("node1"), heartbeat_name("node2")}
    assert a.leading() == set(SVCS) and b.leading() == set()
    assert all(api.leases[s].holder == "node1" for s in SVCS)  # kubectl get lease: the holder


def test_a_cut_off_holder_stops_before_a_follower_fences_it_and_takes_over(
    make: Make, api: FakeLeaseAPI
) -> None:
    a, ra = make("node1")
    _wait(a.heartbeat_alive)
    for s in SVCS:
        a.want(s, True)
    _wait(lambda: a.leading() == set(SVCS))
    b, rb = make("node2")
    for s in SVCS:
        b.want(s, True)
    _wait(b.heartbeat_alive)
    api.hang_for.add("node1")  # node1 cannot reach the API server any more
    _wait(lambda: b.leading() == set(SVCS), timeout=3 * T.lease_duration + 5)
    assert api.leases[heartbeat_name("node1")].holder == ""  # fenced
    stopped = max(t for t, _, leading, _ in ra.events if not leading)
    started = min(t for t, _, leading, _ in rb.events if leading)
    assert stopped < started
    assert a.leading() == set()
    # Back: node1 takes its heartbeat again and follows; nothing moves back.
    api.hang_for.discard("node1")
    _wait(a.heartbeat_alive, timeout=5)
    time.sleep(5 * T.retry_period)
    assert a.leading() == set() and b.leading() == set(SVCS)


def test_a_planned_stop_hands_over_at_once(make: Make, api: FakeLeaseAPI) -> None:
    a, _ = make("node1")
    _wait(a.heartbeat_alive)
    a.want(SVCS[0], True)
    _wait(lambda: a.is_leading(SVCS[0]))
    b, _ = make("node2")
    b.want(SVCS[0], True)
    _wait(b.heartbeat_alive)
    t0 = time.monotonic()
    a.stop(release_timeout=0.5)
    _wait(lambda: b.is_leading(SVCS[0]), timeout=5)
    assert time.monotonic() - t0 < T.lease_duration  # the release, not an expiry
    assert api.leases[heartbeat_name("node1")].holder == ""


def test_economy_needs_a_heartbeat(api: FakeLeaseAPI) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        Elector(api.client("node1"), "node1", T, Recorder(), economy=True)


def test_the_mode_is_a_config_key_checked_with_the_timings() -> None:
    from agent.config import ConfigError, resolve

    assert resolve({}).config.l2_announcements_lease_mode == "per-service"
    assert (
        resolve({"l2-announcements-lease-mode": "economy"}).config.l2_announcements_lease_mode
        == "economy"
    )
    with pytest.raises(ConfigError, match="expected one of per-service, economy"):
        resolve({"l2-announcements-lease-mode": "cheap"})
    # 15 s lease, 13 s renew deadline: stamps would outlive what a follower waits.
    with pytest.raises(ConfigError, match=r"needs l2-announcements-lease-duration above 15.7s"):
        resolve(
            {"l2-announcements-lease-mode": "economy", "l2-announcements-renew-deadline": "13s"}
        )
    # The same timings are fine per service (the seed's clamps only).
    resolve({"l2-announcements-renew-deadline": "13s"})


def test_the_agent_s_lease_gc_deletes_what_its_table_shows_released_without_a_list(
    tmp_path: Path,
) -> None:
    import kubernetes

    from agent.agent import Agent
    from agent.config import Config
    from agent.leases.record import LeaseRecord, row_from_record
    from common.tables.leases import LEASES

    api = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    config = Config(state_dir=str(tmp_path), node_name="node1", enable_l2_announcements=True)
    a = Agent(config, {}, datapath=False, api_client=api)
    try:
        deleted: list[list[tuple[str, str]]] = []

        def delete_versions(leases: list[tuple[str, str]], timeout: float = 10.0) -> list[str]:
            deleted.append(leases)
            return [n for n, _ in leases]

        a.lease_api.delete_versions = delete_versions  # type: ignore[method-assign]
        assert a._collect_released_leases() == 0 and deleted == []  # not listed yet
        with a.db.write_txn(LEASES) as txn:
            txn.initializer_done(LEASES, "reflector:leases")
            for name, holder, rv in [
                (SVCS[0], "", "11"),
                (SVCS[1], "node2", "12"),
                (heartbeat_name("node3"), "", "13"),
                (heartbeat_name("node1"), "node1", "14"),
            ]:
                txn.upsert(
                    LEASES, row_from_record(name, LeaseRecord(holder, 15, resource_version=rv))
                )
            txn.commit()
        assert a._collect_released_leases() == 2
        assert sorted(deleted[-1]) == sorted([(SVCS[0], "11"), (heartbeat_name("node3"), "13")])
    finally:
        a.db.close()
