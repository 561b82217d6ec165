"""The seam between the HTTP server and the request pipeline around every API call.

For every request the server (server.py) does, in this order:

1. parse the URL into a RequestInfo (server.py);
2. ``user = pipeline.authenticator.authenticate(headers)``; None -> 401 Status "Unauthorized";
3. ``action = pipeline.faults.before(user, info)``; the server executes the FaultAction
   (delay, answer, reset, stall, refuse, commit_then_fail, ...) before or instead of the handler;
4. ``decision = pipeline.authorizer.authorize(user, info)``; not allowed -> 403 Status whose
   message is ``decision.reason`` (the real apiserver's "... is forbidden: User ..." text);
5. the handler runs; watches ask ``pipeline.faults.watch_fault(user, info)`` between events;
6. ``pipeline.request_log.record(...)`` with the outcome.

Requests for ``/_lab/...`` (the lab's control surface, control.py) are the exception: after step
2 they go to ``LabControl.handle(user, method, path, query, body)`` and skip faults, RBAC and the
log, so a partitioned or RBAC-less admin can still drive the lab. A "stall" FaultAction carries a
``release`` event that is set when the fault is lifted; the held request is then resolved as its
``after_release`` says (the same holds for a "stall" WatchFault).

The defaults below allow everything and inject nothing, so the server works before auth, RBAC and
fault injection are switched on. Implementations live in auth.py, rbac.py, faults.py and
requestlog.py; this module only names the shapes both sides agree on.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

Verb = Literal[
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy"
]


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An authenticated identity, as the real apiserver's user.Info."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    # The node a bound token belongs to (the real apiserver's "authentication.kubernetes.io/
    # node-name" extra): every node's agent is the same ServiceAccount, but fault rules can still
    # target one node as "<name>@<node>" (fault_spec.node_bound_name).
    node: str = ""


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a request is about, as the apiserver's RequestInfo (apiserver/pkg/endpoints/request)."""

    method: str
    path: str
    query: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    is_resource_request: bool = True
    verb: str = ""  # Kubernetes verb (Verb above), or the lower-cased HTTP method otherwise
    api_group: str = ""  # "" for core/v1
    api_version: str = ""
    resource: str = ""  # plural, e.g. "leases"
    subresource: str = ""  # e.g. "status"
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""  # for a denial: the full message of the 403 Status


FaultKind = Literal[
    "delay",  # sleep `seconds`, then continue normally
    "respond",  # answer `status` with `body` (raw bytes) and `content_type`, `headers`
    "commit_then_fail",  # run the handler (the write happens), then answer `status` instead
    #                      (status 0: drop the connection with a TCP RST instead of answering)
    "commit_then_delay",  # run the handler (the write happens, watchers see it), then wait
    #                       `seconds` before answering: the writer hears back after its watchers
    "reset",  # close the connection with a TCP RST, no answer
    "refuse",  # close the connection without an answer (FIN)
    "stall",  # hold the connection open and answer nothing until healed or the client gives up
]


@dataclass(frozen=True, slots=True)
class FaultAction:
    kind: FaultKind
    seconds: float = 0.0
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    # "stall" only: set when the fault is lifted (a partition healed). None means stall until the
    # client gives up or the server stops. Once set, the server resolves the held request as
    # `after_release` says: "reset" drops it with a TCP RST, "continue" runs the handler late
    # (the realistic stale success of spec 6.7).
    release: threading.Event | None = None
    after_release: Literal["reset", "continue"] = "reset"


WatchFaultKind = Literal[
    "end",  # end the stream cleanly (the client re-watches)
    "reset",  # drop the connection with a TCP RST
    "stall",  # stop sending events (and bookmarks) but keep the connection open
    "expire",  # send an in-stream ERROR event with a 410 Status, then end
]


@dataclass(frozen=True, slots=True)
class WatchFault:
    kind: WatchFaultKind
    # "stall" only: set when the stall is lifted; the server then resumes sending events
    # (after_release "continue") or drops the stream with a TCP RST ("reset").
    release: threading.Event | None = None
    after_release: Literal["reset", "continue"] = "continue"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One answered (or failed) request, for tests that ask 'PUTs to lease X by node2 in 5 s'."""

    time: float  # time.monotonic() when the request arrived
    user: str
    info: RequestInfo
    status: int  # HTTP status sent, 0 when the connection was dropped or stalled
    duration: float
    fault: str = ""  # the FaultKind applied, if any


class Authenticator(Protocol):
    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None: ...


class Authorizer(Protocol):
    def authorize(self, user: UserInfo, info: RequestInfo) -> Decision: ...


class FaultInjector(Protocol):
    def before(self, user: UserInfo, info: RequestInfo) -> FaultAction | None: ...

    def watch_fault(self, user: UserInfo, info: RequestInfo) -> WatchFault | None: ...


class RequestLog(Protocol):
    def record(self, record: RequestRecord) -> None: ...


class AllowAll:
    """Authenticates every request as an admin and allows everything."""

    def authenticate(self, headers: Mapping[str, str]) -> UserInfo | None:
        return UserInfo(name="admin", groups=("system:masters", "system:authenticated"))

    def authorize(self, user: UserInfo, info: RequestInfo) -> Decision:
        return Decision(allowed=True)


class NoFaults:
    def before(self, user: UserInfo, info: RequestInfo) -> FaultAction | None:
        return None

    def watch_fault(self, user: UserInfo, info: RequestInfo) -> WatchFault | None:
        return None


class DiscardLog:
    def record(self, record: RequestRecord) -> None:
        return None


@dataclass
class Pipeline:
    authenticator: Authenticator = field(default_factory=AllowAll)
    authorizer: Authorizer = field(default_factory=AllowAll)
    faults: FaultInjector = field(default_factory=NoFaults)
    request_log: RequestLog = field(default_factory=DiscardLog)
