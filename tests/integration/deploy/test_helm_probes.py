"""The chart's probes, rendered by the helm binary built with the control plane: ``healthPort``
moves the agent's port (``agent-health-port``, set in the DaemonSet's environment) and the port
its three probes ask together, so the two cannot disagree; the schema refuses a port that the
kubelet could not probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import env_name, resolve
from tests.integration.deploy.chart import RenderError, render
from tests.unit.deploy.manifests import container, env_of, one

SCHEMA_ERROR = (
    "Error: values don't meet the specifications of the schema(s) in the following chart(s):\n"
    "l2announcer:\n"
)
PROBES = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}


def test_health_port_moves_the_agents_port_and_its_probes_together(tmp_path: Path) -> None:
    ds = one("DaemonSet", render(tmp_path, sets=["healthPort=9321"]))
    env = env_of(ds)
    assert env[env_name("agent-health-port")] == {
        "name": env_name("agent-health-port"),
        "value": "9321",
    }
    # What the agent makes of it.
    config = resolve({}, {env_name("agent-health-port"): "9321"}).config
    assert config.agent_health_port == 9321
    c = container(ds)
    for probe, path in PROBES.items():
        assert c[probe]["httpGet"] == {"host": "127.0.0.1", "path": path, "port": 9321}, probe


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("healthPort=0", "- at '/healthPort': minimum: got 0, want 1"),
        ("healthPort=65536", "- at '/healthPort': maximum: got 65,536, want 65,535"),
        ("healthPort=abc", "- at '/healthPort': got string, want integer"),
    ],
)
def test_the_schema_refuses_a_port_the_kubelet_cannot_probe(
    tmp_path: Path, setting: str, message: str
) -> None:
    with pytest.raises(RenderError) as err:
        render(tmp_path, sets=[setting])
    assert str(err.value).startswith(SCHEMA_ERROR + message), err.value


def test_extra_env_may_not_set_the_health_port_behind_the_probes(tmp_path: Path) -> None:
    values = {"extraEnv": [{"name": env_name("agent-health-port"), "value": "9000"}]}
    with pytest.raises(RenderError) as err:
        render(tmp_path, values)
    assert f"extraEnv may not set {env_name('agent-health-port')}: the chart sets it" in str(
        err.value
    )
