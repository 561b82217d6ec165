"""The probes' rules and the server that answers them: ``/healthz`` is "the health publisher
published lately", ``/readyz`` adds "no module Degraded or Starting"; answered from the
publisher's last publication in memory, on loopback; ``l2agent --health-probe`` applies the same
rules to the health table."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.health_publisher import HealthPublisher, Published
from agent.health_rules import LIVENESS_MAX_AGE, liveness_failure, readiness_failures
from agent.health_server import HealthServer
from agent.main import main
from agent.runtime import FakeClock, Health, HealthRegistry, Level
from common.tables.health import HEALTH
from statedb import Database, StateDBError

HEALTHY = {"devices": Health.ok("2 devices"), "elector": Health.ok(), "datapath": Health.ok()}


class Publisher:
    """A health publisher's ``last``, set by the test."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.last: Published | None = None

    def publish(self, health: dict[str, Health]) -> None:
        self.last = Published(self.clock.monotonic(), dict(health))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def publisher(clock: FakeClock) -> Publisher:
    return Publisher(clock)


@pytest.fixture
def server(clock: FakeClock, publisher: Publisher) -> HealthServer:
    return HealthServer(0, lambda: publisher.last, clock=clock)


# -- the rules -------------------------------------------------------------------------------------


def test_alive_while_the_publication_is_at_most_the_max_age_old() -> None:
    assert liveness_failure(0.0) is None
    assert liveness_failure(LIVENESS_MAX_AGE) is None
    assert liveness_failure(LIVENESS_MAX_AGE + 0.5) == (
        "no heartbeat from the agent for 10s (last 10s ago)"
    )
    assert liveness_failure(None) == "the agent has not published its health yet (starting)"


def test_not_ready_for_each_module_degraded_or_starting_and_only_those() -> None:
    health = {
        **HEALTHY,
        "reflector:services": Health.degraded("list: connection refused"),
        "lease-gc": Health.stopped(),
        "datapath": Health.starting("loading the program"),
    }
    assert readiness_failures(health) == [
        "datapath: Starting: loading the program",
        "reflector:services: Degraded: list: connection refused",
    ]
    assert readiness_failures(HEALTHY) == []
    assert readiness_failures({"elector": Health(Level.DEGRADED)}) == ["elector: Degraded"]
    multi_line = Health.degraded("(403)\nReason: Forbidden\nHTTP response body: {}")
    assert readiness_failures({"reflector:leases": multi_line}) == [
        "reflector:leases: Degraded: (403) Reason: Forbidden HTTP response body: {}"
    ]


# -- the answers -----------------------------------------------------------------------------------


def test_nothing_is_live_or_ready_before_the_first_publication(server: HealthServer) -> None:
    starting = (503, "the agent has not published its health yet (starting)\n")
    assert server.answer("/healthz") == starting
    assert server.answer("/readyz") == starting


def test_a_degraded_module_fails_readiness_never_liveness(
    server: HealthServer, publisher: Publisher
) -> None:
    publisher.publish({**HEALTHY, "reflector:services": Health.degraded("watch: 403 Forbidden")})
    assert server.answer("/healthz") == (200, "ok\n")
    assert server.answer("/readyz") == (503, "reflector:services: Degraded: watch: 403 Forbidden\n")
    publisher.publish(HEALTHY)
    assert server.answer("/readyz") == (200, "ok\n")


def test_a_stale_publication_fails_both(
    server: HealthServer, publisher: Publisher, clock: FakeClock
) -> None:
    publisher.publish(HEALTHY)
    clock.advance(LIVENESS_MAX_AGE)
    assert server.answer("/healthz") == (200, "ok\n")
    clock.advance(1.0)
    dead = (503, "no heartbeat from the agent for 10s (last 11s ago)\n")
    assert server.answer("/healthz") == dead
    assert server.answer("/readyz") == dead


def test_a_query_is_ignored_and_other_paths_are_not_found(
    server: HealthServer, publisher: Publisher
) -> None:
    publisher.publish(HEALTHY)
    assert server.answer("/readyz?verbose") == (200, "ok\n")
    status, body = server.answer("/metrics")
    assert status == 404 and "/healthz and /readyz" in body


# -- served on loopback ----------------------------------------------------------------------------


def _request(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


@pytest.fixture
def serving(server: HealthServer) -> Iterator[HealthServer]:
    server.start()
    yield server
    server.stop()


def test_served_as_plain_text_on_loopback(serving: HealthServer, publisher: Publisher) -> None:
    assert serving.port > 0  # 0 asked for a free one
    publisher.publish({**HEALTHY, "elector": Health.starting("waiting for the leases cache")})
    status, headers, body = _request(serving.port, "GET", "/readyz")
    assert (status, body) == (503, b"elector: Starting: waiting for the leases cache\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Length"] == str(len(body))
    assert _request(serving.port, "GET", "/healthz")[::2] == (200, b"ok\n")
    assert _request(serving.port, "HEAD", "/healthz")[::2] == (200, b"")
    assert serving.health.current() == Health.ok(
        f"serving /healthz and /readyz on 127.0.0.1:{serving.port}"
    )


def test_a_client_that_hangs_up_does_not_stop_the_server(
    serving: HealthServer, publisher: Publisher
) -> None:
    publisher.publish(HEALTHY)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", serving.port)) as s:
            s.sendall(b"GET /hea")
    assert _request(serving.port, "GET", "/healthz")[::2] == (200, b"ok\n")
    assert serving.health.current().is_ok


def test_stop_closes_the_port_and_reports_stopped(server: HealthServer) -> None:
    server.start()
    port = server.port
    server.stop()
    assert server.health.current().level is Level.STOPPED
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_stop_right_after_start_returns_at_once(server: HealthServer) -> None:
    # Regression guard: socketserver's shutdown() waits for serve_forever to have started and
    # would hang a stop that came first; the job's wake ends this loop wherever it is.
    for _ in range(20):
        server = HealthServer(0, lambda: None, clock=FakeClock())
        server.start()
        assert server.job.stop(timeout=5.0)
        server.stop()


def test_a_port_in_use_is_one_line_naming_the_key(clock: FakeClock) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HealthServer(port, lambda: None, clock=clock)
        with pytest.raises(RuntimeError) as e:
            server.start()
    assert str(e.value) == (
        f"agent-health-port {port}: 127.0.0.1:{port} is already in use by another process; "
        "set agent-health-port (chart: healthPort) to a free port, the probes follow it"
    )
    assert not server.job.running
    server.stop()  # nothing to stop; never raises


# -- the publisher's side --------------------------------------------------------------------------


def test_the_publisher_keeps_its_last_committed_publication(clock: FakeClock) -> None:
    registry = HealthRegistry()
    registry.reporter("elector").ok("leading 1 of 1 lease(s)")
    db = Database.open(None, [HEALTH])
    publisher = HealthPublisher(db, registry, interval=1.0, clock=clock)
    assert publisher.last is None
    publisher.publish()
    assert publisher.last == Published(
        clock.monotonic(), {"elector": Health.ok("leading 1 of 1 lease(s)")}
    )
    first = publisher.last
    clock.advance(5.0)
    db.close()
    with pytest.raises(StateDBError):
        publisher.publish()
    assert publisher.last is first, "a publication that was not written does not count"


# -- the command line ------------------------------------------------------------------------------


def _probe(state: Path, *extra: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["--health-probe", *extra, f"--state-dir={state}"])
    code = exit_.value.code
    return (code if isinstance(code, int) else 0), capsys.readouterr().err


def test_the_command_line_applies_the_same_rules_to_the_health_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(os.environ):
        if name.startswith("L2ANNOUNCER_"):
            monkeypatch.delenv(name)
    assert _probe(tmp_path / "none", capsys=capsys)[0] == 2
    registry = HealthRegistry()
    registry.reporter("devices").ok()
    elector = registry.reporter("elector")
    elector.starting("waiting for the leases cache")
    clock = FakeClock(now=time.time())
    with Database.open(tmp_path / "statedb.sqlite", [HEALTH]) as db:
        publisher = HealthPublisher(db, registry, interval=1.0, clock=clock)
        publisher.publish()
        assert _probe(tmp_path, capsys=capsys) == (
            1,
            "elector: Starting: waiting for the leases cache\n",
        )
        assert _probe(tmp_path, "--liveness", capsys=capsys) == (0, "")
        elector.ok()
        publisher.publish()
        assert _probe(tmp_path, capsys=capsys) == (0, "")
