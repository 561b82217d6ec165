"""The rules of the agent's probes, in one place for both ways of asking: the agent's own
``/healthz`` and ``/readyz`` (``agent/health_server.py``, from the health publisher's last
publication in memory) and ``l2agent --health-probe`` (the same publication read back from the
``health`` table). It imports nothing heavy, so that the command line stays quick.

- Liveness: the health publisher published within ``LIVENESS_MAX_AGE``, whatever the modules'
  levels. It is the one loop every running agent keeps; an unreachable API server degrades
  modules but must never restart every agent at once (and so withdraw every announcement): only
  an agent that stopped publishing (wedged) is restarted.
- Readiness: live, and no module Degraded or still Starting.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.runtime.health import Health, Level

LIVENESS_MAX_AGE = 10.0
"""Seconds: the last publication may be this old before the agent counts as dead; max(10 s,
3 x the health publisher's interval, ``agent.agent.HEALTH_PUBLISH_INTERVAL``, 1 s), so a busy
node's scheduling hiccup never restarts the agent."""

NOT_READY = frozenset({Level.DEGRADED, Level.STARTING})


def liveness_failure(age: float | None) -> str | None:
    """Why the agent does not count as alive, given the age in seconds of its last publication
    (None: never published); None when it does."""
    if age is None:
        return "the agent has not published its health yet (starting)"
    if age > LIVENESS_MAX_AGE:
        return f"no heartbeat from the agent for {LIVENESS_MAX_AGE:.0f}s (last {age:.0f}s ago)"
    return None


def readiness_failures(health: Mapping[str, Health]) -> list[str]:
    """One line per module that keeps the agent from being ready, by name (a message of several
    lines, such as an API error's, is joined into one)."""
    return [
        " ".join(f"{name}: {h}".split())
        for name, h in sorted(health.items())
        if h.level in NOT_READY
    ]
