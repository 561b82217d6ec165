"""Typed health: reporters, probes, and the registry the publisher reads."""

from __future__ import annotations

import pytest

from agent.runtime import Health, HealthRegistry, HealthReporter, Level


def test_a_new_reporter_is_starting() -> None:
    assert HealthReporter("x").current() == Health.starting("not started")


def test_levels_are_values_and_render_as_the_table_spells_them() -> None:
    assert [level.value for level in Level] == ["OK", "Starting", "Degraded", "Stopped"]
    assert str(Health.degraded("map full")) == "Degraded: map full"
    assert str(Health.ok()) == "OK"
    assert Health.ok("1 object(s)").is_ok and not Health.degraded("x").is_ok


def test_a_probe_is_asked_at_read_time() -> None:
    state = {"n": 1}
    r = HealthReporter("probed", probe=lambda: Health.ok(f"{state['n']} lease(s)"))
    assert r.current() == Health.ok("1 lease(s)")
    state["n"] = 2
    assert r.current() == Health.ok("2 lease(s)")


def test_a_probe_that_raises_is_a_degradation_not_an_exception() -> None:
    def probe() -> Health:
        raise KeyError("campaigns")

    r = HealthReporter("broken", probe=probe)
    assert r.current() == Health.degraded("health check failed: 'campaigns'")


def test_stopped_wins_over_the_probe() -> None:
    r = HealthReporter("probed", probe=lambda: Health.ok("busy"))
    r.stopped()
    assert r.current() == Health.stopped()


def test_set_probe_replaces_the_probe() -> None:
    r = HealthReporter("late")
    r.ok("set")
    r.set_probe(lambda: Health.degraded("probed"))
    assert r.current() == Health.degraded("probed")
    r.set_probe(None)
    assert r.current() == Health.ok("set")


def test_registry_snapshot_has_every_reporter_by_name() -> None:
    registry = HealthRegistry()
    a = registry.reporter("a")
    a.ok()
    registry.add(HealthReporter("b", probe=lambda: Health.degraded("down")))
    assert registry.snapshot() == {"a": Health.ok(), "b": Health.degraded("down")}


def test_registry_refuses_a_name_twice() -> None:
    registry = HealthRegistry()
    registry.reporter("elector")
    with pytest.raises(ValueError, match="'elector' is registered twice"):
        registry.add(HealthReporter("elector"))
