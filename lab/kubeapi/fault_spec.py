"""What a fault rule says: which requests it matches and what it does to them.

Plain frozen values with a JSON form, so the same rule can be built in a test, sent over the lab's
control surface (control.py) and listed back. The engine that applies them is faults.py.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from lab.kubeapi.fault_answers import ErrorAnswer, answer_from_json, answer_to_json
from lab.kubeapi.pipeline import RequestInfo, UserInfo, WatchFaultKind

Release = Literal["reset", "continue"]

# -- effects -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delay:
    """Sleep before handling (queueing latency); `jitter` adds a uniform 0..jitter seconds."""

    seconds: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class CommitThenFail:
    """Run the handler (the write is committed and watchers see it), then answer `answer`
    instead of the result, or drop the connection with a TCP RST when `answer` is None."""

    answer: ErrorAnswer | None = None


@dataclass(frozen=True, slots=True)
class CommitThenDelay:
    """Run the handler (the write is committed and watchers see it), then wait `seconds` (plus
    a uniform 0..`jitter`) before answering: the writer hears of its own write last."""

    seconds: float
    jitter: float = 0.0


@dataclass(frozen=True, slots=True)
class Drop:
    """Close without answering: ``reset`` (RST) or ``refuse`` (FIN)."""

    kind: Literal["reset", "refuse"] = "reset"


@dataclass(frozen=True, slots=True)
class Stall:
    """Read the request and answer nothing until the rule is removed, then `after_release`."""

    after_release: Release = "reset"


@dataclass(frozen=True, slots=True)
class WatchEffect:
    """A fault applied to an open watch stream between events."""

    kind: WatchFaultKind
    after_release: Release = "continue"  # for "stall"


RequestEffect = Delay | ErrorAnswer | CommitThenFail | CommitThenDelay | Drop | Stall
Effect = RequestEffect | WatchEffect


# -- matching ------------------------------------------------------------------------------------


def node_bound_name(user: str, node: str) -> str:
    """How a fault rule names one node's token of a user (``l2lab api partition node2``)."""
    return f"{user}@{node}"


def _names(user: UserInfo) -> tuple[str, ...]:
    """A user as fault rules see it: its name, and for a node-bound token also name@node."""
    return (user.name, node_bound_name(user.name, user.node)) if user.node else (user.name,)


def _glob(pattern: str, value: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(value, pattern)
    return pattern == value


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a rule applies to; empty tuples / None match anything.

    `resource` "leases" matches the lease object and its subresources; "services/status" only the
    status subresource; `subresource` "" restricts to the main resource.
    """

    users: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    api_group: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None

    @classmethod
    def build(
        cls,
        user: str | Iterable[str] | None = None,
        verb: str | Iterable[str] | None = None,
        resource: str | None = None,
        api_group: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> Match:
        if resource and "/" in resource:
            resource, subresource = resource.split("/", 1)
        return cls(
            users=_tuple(user),
            verbs=_tuple(verb),
            api_group=api_group,
            resource=resource,
            subresource=subresource,
            namespace=namespace,
            name=name,
        )

    def matches(self, user: UserInfo, info: RequestInfo) -> bool:
        if self.users and not any(_glob(u, n) for u in self.users for n in _names(user)):
            return False
        if self.verbs and info.verb not in self.verbs:
            return False
        if self.api_group is not None and info.api_group != self.api_group:
            return False
        if self.resource is not None and not _glob(self.resource, info.resource):
            return False
        if self.subresource is not None and info.subresource != self.subresource:
            return False
        if self.namespace is not None and not _glob(self.namespace, info.namespace):
            return False
        return self.name is None or _glob(self.name, info.name)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.users:
            out["user"] = list(self.users)
        if self.verbs:
            out["verb"] = list(self.verbs)
        for key in ("api_group", "resource", "subresource", "namespace", "name"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Match:
        unknown = set(data) - {
            "user",
            "verb",
            "api_group",
            "resource",
            "subresource",
            "namespace",
            "name",
        }
        if unknown:
            raise ValueError(f"unknown match fields: {', '.join(sorted(unknown))}")
        return cls.build(
            user=data.get("user"),
            verb=data.get("verb"),
            resource=data.get("resource"),
            api_group=data.get("api_group"),
            namespace=data.get("namespace"),
            name=data.get("name"),
            subresource=data.get("subresource"),
        )


def _tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


# -- effect (de)serialization for the control surface --------------------------------------------


def effect_to_json(effect: Effect) -> dict[str, Any]:
    if isinstance(effect, Delay):
        return {"type": "delay", "seconds": effect.seconds, "jitter": effect.jitter}
    if isinstance(effect, ErrorAnswer):
        return {"type": "error", **answer_to_json(effect)}
    if isinstance(effect, CommitThenFail):
        answer = None if effect.answer is None else answer_to_json(effect.answer)
        return {"type": "commit_then_fail", "answer": answer}
    if isinstance(effect, CommitThenDelay):
        return {"type": "commit_then_delay", "seconds": effect.seconds, "jitter": effect.jitter}
    if isinstance(effect, Drop):
        return {"type": effect.kind}
    if isinstance(effect, Stall):
        return {"type": "stall", "after_release": effect.after_release}
    return {"type": "watch", "kind": effect.kind, "after_release": effect.after_release}


def _release(value: Any, default: Release) -> Release:
    value = value or default
    if value not in ("reset", "continue"):
        raise ValueError(f"after_release must be 'reset' or 'continue', not {value!r}")
    return cast(Release, value)


def effect_from_json(data: Mapping[str, Any]) -> Effect:
    kind = data.get("type")
    if kind == "delay":
        return Delay(float(data["seconds"]), float(data.get("jitter") or 0.0))
    if kind == "error":
        return answer_from_json(data)
    if kind == "commit_then_fail":
        answer = data.get("answer")
        return CommitThenFail(None if answer is None else answer_from_json(answer))
    if kind == "commit_then_delay":
        return CommitThenDelay(float(data["seconds"]), float(data.get("jitter") or 0.0))
    if kind in ("reset", "refuse"):
        return Drop(kind)
    if kind == "stall":
        return Stall(_release(data.get("after_release"), "reset"))
    if kind == "watch":
        watch_kind = data.get("kind")
        if watch_kind not in ("end", "reset", "stall", "expire"):
            raise ValueError(f"unknown watch fault {watch_kind!r}")
        return WatchEffect(
            cast(WatchFaultKind, watch_kind), _release(data.get("after_release"), "continue")
        )
    raise ValueError(
        f"unknown effect type {kind!r}; known: delay, error, commit_then_fail, "
        "commit_then_delay, reset, refuse, stall, watch"
    )
