"""Each policy's last valid version, so that a bad edit never takes traffic down.

A policy whose current version fails a check (bad node selector, bad interface regex, bad service
selector) gets its condition, but its Services stay selected by the last version of it that this
agent saw pass every check: the agent keeps evaluating that version against the node's current
labels and devices, and switches to the current version as soon as it is valid again. A typo in a
working policy costs nothing but the condition and a warning. (The reference returned on the
error and left the Services to be withdrawn by the next event.)

What is remembered lives in the agent's memory only. An agent that starts while a policy is
invalid has never seen a valid version of it, so it treats the policy as absent, as the reference
does: it selects nothing through it, campaigns for none of its Services and logs that the policy
is not applied. The agents that were already running keep announcing with the last valid version,
so restarting one node moves its Services to the others; if every agent restarts while the policy
is invalid, its Services are announced again only once it is fixed.

A version that is valid but whose node selector does not match this node is a valid version (its
Services are withdrawn here on purpose): only failed checks are bridged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from agent.policy.evaluate import PolicyView, evaluate_policy
from common.tables.policies import Policy


class LastValidPolicies:
    """Evaluates the policies of one node, remembering each one's last valid version."""

    def __init__(self) -> None:
        self._valid: dict[str, Policy] = {}

    def evaluate(
        self,
        policies: Sequence[Policy],
        node_labels: Mapping[str, str],
        selected_devices: Sequence[str],
    ) -> list[PolicyView]:
        """One view per policy, in the given order. A view's ``checks`` are always those of the
        current version (they become its conditions); when that version is invalid and a valid
        one was seen, the selection is the valid one's and ``kept_generation`` names it."""
        current = {p.name for p in policies}
        for name in [n for n in self._valid if n not in current]:
            del self._valid[name]  # deleted: a policy created again later starts afresh
        views = []
        for p in policies:
            view = evaluate_policy(p, node_labels, selected_devices)
            if view.valid:
                self._valid[p.name] = p
            else:
                kept = self._valid.get(p.name)
                if kept is not None:
                    old = evaluate_policy(kept, node_labels, selected_devices)
                    view = dataclasses.replace(
                        old, checks=view.checks, kept_generation=kept.generation
                    )
            views.append(view)
        return views

    def last_valid(self, name: str) -> Policy | None:
        return self._valid.get(name)
