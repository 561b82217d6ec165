"""Fixtures for the devices privileged tests: a namespace with a veth pair, the controller
running inside it as a child process, and a reader of the state database it writes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.tables.devices import DEVICES, Device
from statedb import ReadOnlyDatabase
from statedb.errors import StateDBNotFound

RUNNER = Path(__file__).with_name("run_controller.py")
# How long a change may take to reach the table before a test fails. The target is well under
# a second; this bound only keeps a slow CI machine from failing (timings belong in bench/).
DEADLINE = 5.0


def ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], check=True, capture_output=True, text=True
    ).stdout


@dataclass
class Agent:
    """The controller child process and a read-only view of its database."""

    ns: str
    db_path: Path
    proc: subprocess.Popen[str]
    log_path: Path
    _ro: ReadOnlyDatabase | None = field(default=None)

    def rows(self) -> dict[str, Device]:
        if self._ro is None:
            # Open only once the writer is up: before it has switched the file to WAL mode a
            # reader would open it immutable and never see a change.
            if "started" not in self.log():
                return {}
            try:
                self._ro = ReadOnlyDatabase.open(self.db_path)
            except StateDBNotFound:
                return {}
        with self._ro.snapshot() as snap:
            if not snap.initialized(DEVICES):
                return {}
            return {d.name: d for d in snap.rows(DEVICES)}

    def wait_for(self, what: str, check: Callable[[dict[str, Device]], bool]) -> dict[str, Device]:
        deadline = time.monotonic() + DEADLINE
        rows: dict[str, Device] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited: {self.log_path.read_text()}")
            rows = self.rows()
            if rows and check(rows):
                return rows
            time.sleep(0.02)
        raise AssertionError(f"{what}: not within {DEADLINE}s; table: {rows}")

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        if self._ro is not None:
            self._ro.close()
            self._ro = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def veth_ns(make_netns: Callable[[], str]) -> str:
    """A namespace with lo up and a veth pair va <-> vb, both up, va on 198.51.100.1/24."""
    ns = make_netns()
    ip(ns, "link", "set", "lo", "up")
    ip(ns, "link", "add", "va", "type", "veth", "peer", "name", "vb")
    ip(ns, "addr", "add", "198.51.100.1/24", "dev", "va")
    ip(ns, "link", "set", "va", "up")
    ip(ns, "link", "set", "vb", "up")
    return ns


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Start the controller in a namespace; every agent started is stopped afterwards."""
    agents: list[Agent] = []

    def start(ns: str, *extra: str) -> Agent:
        n = len(agents)
        log_path = tmp_path / f"agent{n}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    sys.executable,
                    str(RUNNER),
                    "--db",
                    str(tmp_path / f"state{n}" / "statedb.sqlite"),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        agent = Agent(ns, tmp_path / f"state{n}" / "statedb.sqlite", proc, log_path)
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.close()
