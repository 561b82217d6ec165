"""Logs what this node finds wrong with a policy, once per change, at warning level.

The announcer evaluates every policy on every pass; a condition that stays the same must not log
again (the seed's runbook greps the agent's log, and one line per pass would bury everything
else). So this remembers, per (policy, condition type), what was last logged: an error is logged
when it appears or its message changes, in the reference's wording (``Error processing policy
event`` with the error as a field), and a condition this node clears is logged too (``Policy
condition cleared``), so the log shows when a fix took effect. Each line says what the agent does
meanwhile: keep the last valid version, or, when it has none, not apply the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agent.logfmt import fields
from agent.policy.evaluate import PolicyView
from common.tables.policies import Policy

log = logging.getLogger("l2announcer.announcer")

ERROR_MESSAGE = "Error processing policy event"  # the reference's warning
CLEARED_MESSAGE = "Policy condition cleared"


def _carries_error(p: Policy, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in (p.conditions or []))


class PolicyLog:
    def __init__(self) -> None:
        # (policy, condition type) -> the error last logged, or None once logged as fine
        self._logged: dict[tuple[str, str], str | None] = {}

    def update(self, policies: Sequence[Policy], views: Sequence[PolicyView]) -> None:
        names = {p.name for p in policies}
        for key in [k for k in self._logged if k[0] not in names]:
            del self._logged[key]  # the policy is gone
        for p, v in zip(policies, views, strict=True):
            for ctype, error in v.checks.items():
                key = (p.name, ctype)
                before = self._logged.get(key, ...)
                if error is not None:
                    if before != error:
                        log.warning(
                            ERROR_MESSAGE,
                            extra=fields(
                                policy=p.name,
                                generation=p.generation,
                                condition=ctype,
                                error=error,
                                keeping=self._keeping(v),
                            ),
                        )
                elif isinstance(before, str) or (before is ... and _carries_error(p, ctype)):
                    log.warning(
                        CLEARED_MESSAGE,
                        extra=fields(policy=p.name, generation=p.generation, condition=ctype),
                    )
                self._logged[key] = error

    @staticmethod
    def _keeping(v: PolicyView) -> str:
        if v.kept_generation is not None:
            return f"the last valid version (generation {v.kept_generation})"
        return "nothing: no valid version seen since this agent started, the policy is not applied"
