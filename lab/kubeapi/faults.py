"""Fault injection: rules that make the test server slow, wrong or silent for chosen clients.

The agent's safety claims are about failures (a stalled connection must not keep a leader; a
lost PUT response must not confuse the elector), so tests need to produce those failures on
demand, for one node at a time. A rule is

    match (who and what) + effect (what goes wrong) + trigger (how often)

- **match**: user name (one token per simulated node identifies it), verb, API group, resource
  (``services/status`` names a subresource), namespace, object name. Empty fields match anything;
  values may be shell-style globs (``system:serviceaccount:kube-system:*``).
- **effect**, per request (``before``): :class:`Delay`, :class:`ErrorAnswer` (JSON Status,
  plain-text and HTML variants, see ``PRESETS``), :class:`CommitThenFail`,
  :class:`CommitThenDelay` (watchers see a write before its writer hears back), :class:`Drop`
  (reset or refuse), :class:`Stall`; per watch stream between events (``watch_fault``): :class:`WatchEffect`
  (end, reset, stall, expire).
- **trigger**: ``skip`` the first N matches, then fire ``times`` times (None: until removed), each
  with ``probability`` (seeded), optionally only for ``duration`` seconds.

Rules are evaluated by descending ``priority`` then age; the first that fires decides. Spent rules
stay listed (with their hit counts) until removed. A stalled request is held until its rule is
removed (``remove``, ``heal``, ``clear``), then reset or let through as the rule says: that is how
a healed partition resolves requests that were in flight (spec 6.7).

:meth:`FaultInjector.partition` / :meth:`FaultInjector.heal` bundle the rules of spec 6.7 for one
user. All methods are thread-safe; the server calls ``before``/``watch_fault`` from its request
threads while tests add and remove rules.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from lab.kubeapi.fault_answers import PRESETS, ErrorAnswer, render_answer
from lab.kubeapi.fault_spec import (
    CommitThenDelay,
    CommitThenFail,
    Delay,
    Drop,
    Effect,
    Match,
    Release,
    RequestEffect,
    Stall,
    WatchEffect,
    effect_from_json,
    effect_to_json,
)
from lab.kubeapi.pipeline import FaultAction, RequestInfo, UserInfo, WatchFault

__all__ = [
    "PARTITION_MODES",
    "PRESETS",
    "CommitThenDelay",
    "CommitThenFail",
    "Delay",
    "Drop",
    "Effect",
    "ErrorAnswer",
    "FaultInjector",
    "Match",
    "RequestEffect",
    "RuleView",
    "Stall",
    "WatchEffect",
    "effect_from_json",
    "effect_to_json",
    "render_answer",
]

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")

# -- rules ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Rule:
    id: str
    seq: int
    match: Match
    effect: Effect
    times: int | None
    skip: int
    probability: float
    priority: int
    label: str
    deadline: float | None
    release: threading.Event = field(default_factory=threading.Event)
    seen: int = 0
    hits: int = 0

    @property
    def is_watch(self) -> bool:
        return isinstance(self.effect, WatchEffect)

    def spent(self, now: float) -> bool:
        if self.times is not None and self.hits >= self.times:
            return True
        return self.deadline is not None and now >= self.deadline


@dataclass(frozen=True, slots=True)
class RuleView:
    """A snapshot of a rule, for tests and the control surface."""

    id: str
    label: str
    match: Match
    effect: Effect
    times: int | None
    skip: int
    probability: float
    priority: int
    seen: int
    hits: int
    spent: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "match": self.match.to_json(),
            "effect": effect_to_json(self.effect),
            "times": self.times,
            "skip": self.skip,
            "probability": self.probability,
            "priority": self.priority,
            "seen": self.seen,
            "hits": self.hits,
            "spent": self.spent,
        }


PartitionMode = Literal["stall", "refuse", "reset", "watch-stall", "writes-fail"]
PARTITION_MODES: tuple[str, ...] = ("stall", "refuse", "reset", "watch-stall", "writes-fail")
_PARTITION_PRIORITY = 1000


_PARTITION_LABEL = "partition:"


def partition_label(user: str) -> str:
    return f"{_PARTITION_LABEL}{user}"


class FaultInjector:
    """The rule engine; implements pipeline.FaultInjector."""

    def __init__(
        self,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._ids = itertools.count(1)
        self._random = random.Random(seed)
        self._clock = clock

    # -- managing rules -------------------------------------------------------------------------

    def add(
        self,
        effect: Effect,
        match: Match | None = None,
        *,
        times: int | None = None,
        skip: int = 0,
        probability: float = 1.0,
        priority: int = 0,
        duration: float | None = None,
        label: str = "",
    ) -> str:
        """Add a rule; returns its id. `times` None = until removed; `duration` in seconds."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for until removed)")
        if skip < 0 or not 0.0 <= probability <= 1.0:
            raise ValueError("skip must be >= 0 and probability within [0, 1]")
        if isinstance(effect, Delay | CommitThenDelay) and min(effect.seconds, effect.jitter) < 0:
            raise ValueError("a delay's seconds and jitter must be >= 0")
        with self._lock:
            seq = next(self._ids)
            rule = _Rule(
                id=f"f{seq}",
                seq=seq,
                match=match or Match(),
                effect=effect,
                times=times,
                skip=skip,
                probability=probability,
                priority=priority,
                label=label,
                deadline=None if duration is None else self._clock() + duration,
            )
            self._rules.append(rule)
            self._rules.sort(key=lambda r: (-r.priority, r.seq))
        if duration is not None and isinstance(effect, Stall | WatchEffect):
            # Held requests must be let go when the window closes, not at the next request.
            timer = threading.Timer(duration, self.remove, args=(rule.id,))
            timer.daemon = True
            timer.start()
        return rule.id

    def _remove_where(self, doomed: Callable[[_Rule], bool]) -> int:
        """Remove the rules `doomed` picks and release what they stall; returns how many."""
        with self._lock:
            removed = [r for r in self._rules if doomed(r)]
            self._rules = [r for r in self._rules if not doomed(r)]
        for rule in removed:
            rule.release.set()
        return len(removed)

    def remove(self, rule_id: str) -> bool:
        """Remove a rule and release whatever it is stalling."""
        return self._remove_where(lambda r: r.id == rule_id) > 0

    def remove_label(self, label: str) -> int:
        return self._remove_where(lambda r: r.label == label)

    def clear(self) -> int:
        return self._remove_where(lambda r: True)

    def rules(self) -> list[RuleView]:
        with self._lock:
            now = self._clock()
            return [self._view(r, now) for r in self._rules]

    def rule(self, rule_id: str) -> RuleView | None:
        return next((r for r in self.rules() if r.id == rule_id), None)

    @staticmethod
    def _view(rule: _Rule, now: float) -> RuleView:
        return RuleView(
            id=rule.id,
            label=rule.label,
            match=rule.match,
            effect=rule.effect,
            times=rule.times,
            skip=rule.skip,
            probability=rule.probability,
            priority=rule.priority,
            seen=rule.seen,
            hits=rule.hits,
            spent=rule.spent(now),
        )

    # -- conveniences ---------------------------------------------------------------------------

    def delay(self, seconds: float, match: Match | None = None, **trigger: Any) -> str:
        return self.add(Delay(seconds), match, **trigger)

    def commit_then_delay(self, seconds: float, match: Match | None = None, **trigger: Any) -> str:
        return self.add(CommitThenDelay(seconds), match, **trigger)

    def error(self, preset: str = "internal", match: Match | None = None, **trigger: Any) -> str:
        if preset not in PRESETS:
            raise ValueError(f"unknown error preset {preset!r}; known: {', '.join(PRESETS)}")
        return self.add(ErrorAnswer(preset), match, **trigger)

    def partition(
        self, user: str, mode: PartitionMode = "stall", on_heal: Release = "reset"
    ) -> list[str]:
        """Cut `user` off (spec 6.7) until :meth:`heal`; returns the rule ids.

        - ``stall``: every request and open stream goes silent (black hole). On heal, held
          requests are reset or answered late (`on_heal`); streams resume or are reset.
        - ``refuse`` / ``reset``: requests are closed unanswered (FIN / RST); streams are reset.
        - ``watch-stall``: streams go silent while unary calls keep working.
        - ``writes-fail``: reads work, writes get 500 InternalError.

        A new partition of the same user replaces the old one (releasing what the old one held).
        """
        label = partition_label(user)
        match = Match(users=(user,))
        effects: list[Effect]
        if mode == "stall":
            stream_release: Release = "reset" if on_heal == "reset" else "continue"
            effects = [Stall(on_heal), WatchEffect("stall", stream_release)]
        elif mode in ("refuse", "reset"):
            effects = [Drop(mode), WatchEffect("reset")]
        elif mode == "watch-stall":
            effects = [WatchEffect("stall", on_heal)]
        elif mode == "writes-fail":
            match = replace(match, verbs=WRITE_VERBS)
            effects = [ErrorAnswer("internal", message="injected partition: writes fail")]
        else:
            raise ValueError(
                f"unknown partition mode {mode!r}; known: {', '.join(PARTITION_MODES)}"
            )
        # Checked here, not only by the control surface, so no caller can build a stall rule
        # whose release nobody understands.
        if on_heal not in ("reset", "continue"):
            raise ValueError("on_heal must be 'reset' or 'continue'")
        self.heal(user)
        return [
            self.add(effect, match, priority=_PARTITION_PRIORITY, label=label) for effect in effects
        ]

    def heal(self, user: str | None = None) -> int:
        """End the partition of `user` (of everyone when None); returns the rules removed."""
        if user is not None:
            return self.remove_label(partition_label(user))
        return self._remove_where(lambda r: r.label.startswith(_PARTITION_LABEL))

    def partitioned(self) -> list[str]:
        with self._lock:
            users = {
                r.label.removeprefix(_PARTITION_LABEL)
                for r in self._rules
                if r.label.startswith(_PARTITION_LABEL)
            }
        return sorted(users)

    def still_stalled(self, user: UserInfo, info: RequestInfo) -> bool:
        """Whether a request stalled earlier is still held: a stall rule matching it remains.

        For servers that poll instead of waiting on ``FaultAction.release``. Spent count-limited
        stall rules still hold (they are lifted by removal, like partitions by ``heal``).
        """
        with self._lock:
            return any(
                isinstance(r.effect, Stall) and r.match.matches(user, info) for r in self._rules
            )

    # -- pipeline.FaultInjector -----------------------------------------------------------------

    def _fire(self, user: UserInfo, info: RequestInfo, watch: bool) -> tuple[_Rule, float] | None:
        with self._lock:
            now = self._clock()
            for rule in self._rules:
                if rule.is_watch != watch or rule.spent(now):
                    continue
                if not rule.match.matches(user, info):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.hits += 1
                return rule, self._random.random()
        return None

    def before(self, user: UserInfo, info: RequestInfo) -> FaultAction | None:
        fired = self._fire(user, info, watch=False)
        if fired is None:
            return None
        rule, draw = fired
        effect = rule.effect
        if isinstance(effect, Delay):
            return FaultAction(kind="delay", seconds=effect.seconds + draw * effect.jitter)
        if isinstance(effect, ErrorAnswer):
            return render_answer(effect, user, info)
        if isinstance(effect, CommitThenFail):
            if effect.answer is None:
                return FaultAction(kind="commit_then_fail", status=0)
            return replace(render_answer(effect.answer, user, info), kind="commit_then_fail")
        if isinstance(effect, CommitThenDelay):
            return FaultAction(
                kind="commit_then_delay", seconds=effect.seconds + draw * effect.jitter
            )
        if isinstance(effect, Drop):
            return FaultAction(kind=effect.kind)
        if isinstance(effect, Stall):
            return FaultAction(
                kind="stall", release=rule.release, after_release=effect.after_release
            )
        raise AssertionError(f"watch effect in a request rule: {effect!r}")

    def watch_fault(self, user: UserInfo, info: RequestInfo) -> WatchFault | None:
        fired = self._fire(user, info, watch=True)
        if fired is None:
            return None
        rule, _ = fired
        effect = rule.effect
        assert isinstance(effect, WatchEffect)
        if effect.kind == "stall":
            return WatchFault(
                kind="stall", release=rule.release, after_release=effect.after_release
            )
        return WatchFault(kind=effect.kind)
