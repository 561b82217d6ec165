"""The lab's control surface: drive fault injection, tokens and the request log over HTTP.

Tests in the server's own process call FaultInjector, TokenAuthenticator and MemoryRequestLog
directly. A server running as a separate process (``l2lab apiserver``, the lab) is driven through
these JSON endpoints instead, e.g. by ``l2lab api partition node2 --mode stall``. The functions
here are pure: the server hands over the authenticated user, method, path, query and body, and
writes back the returned status and JSON. control_client.py holds the matching HTTP client.

Mounting (server side)::

    if control.handles(path):            # path starts with /_lab/
        response = control.handle(user, method, path, query, body)   # user may be None
        send(response.status, json.dumps(response.body))             # application/json

Control requests skip fault injection, RBAC and the request log (a partitioned admin must still
be able to heal, and queries must not count themselves). Only users in ``system:masters`` may use
them: no token -> 401, other users -> 403.

Endpoints (bodies and answers are JSON objects; errors are Status objects):

=======  =============================  ========================================================
GET      /_lab/faults                   ``{"items": [rule, ...]}``
POST     /_lab/faults                   ``{"effect": E, "match": M, "times": n|null, "skip": n,
                                        "probability": p, "priority": n, "duration": s|null,
                                        "label": str}`` -> 201 ``{"id": "f1"}``
GET      /_lab/faults/presets           ``{"presets": {name: description}}``
GET      /_lab/faults/<id>              the rule, or 404
DELETE   /_lab/faults/<id>              ``{"removed": true}``, or 404
DELETE   /_lab/faults                   remove all rules: ``{"removed": n}``
POST     /_lab/partition                ``{"user": name | "token": t, "mode": "stall" | "refuse" |
                                        "reset" | "watch-stall" | "writes-fail",
                                        "on_heal": "reset" | "continue"}``
                                        -> ``{"user": name, "rules": [ids]}``
POST     /_lab/heal                     ``{"user": name | "token": t}``, ``{}`` heals everyone
                                        -> ``{"removed": n}``
GET      /_lab/partitions               ``{"users": [names]}``
GET      /_lab/requests?<filters>       ``{"count": n, "items": [record, ...]}``; filters as query
                                        parameters (verb, resource, api_group, namespace, name,
                                        user, status, fault, since, after, until)
POST     /_lab/requests/query           the same with the filters as a JSON body (lists allowed
                                        for verb and status)
GET      /_lab/requests/count?<filt.>   ``{"count": n}``
DELETE   /_lab/requests                 clear the log
POST     /_lab/tokens                   ``{"kind": "serviceaccount", "namespace": ns, "name": n}``,
                                        ``{"kind": "user", "name": n, "groups": [...]}`` or
                                        ``{"kind": "admin", "name": n}``; optional ``"token"``
                                        -> 201 ``{"token": t, "user": {name, groups, uid}}``
GET      /_lab/tokens                   ``{"items": [{"token": t, "user": {...}}, ...]}``
DELETE   /_lab/tokens/<token>           ``{"removed": true}``, or 404
POST     /_lab/tokens/revoke            ``{"user": name}`` -> ``{"removed": n}``
=======  =============================  ========================================================

Effects E (see faults.py): ``{"type": "delay", "seconds": s, "jitter": s}``,
``{"type": "error", "preset": p, "message": m, "status": c, "retry_after": s}``,
``{"type": "commit_then_fail", "answer": {"preset": p, ...} | null}`` (null: reset after the
write), ``{"type": "commit_then_delay", "seconds": s, "jitter": s}`` (answer late, after the
write), ``{"type": "reset"}``, ``{"type": "refuse"}``, ``{"type": "stall", "after_release":
"reset" | "continue"}``, ``{"type": "watch", "kind": "end" | "reset" | "stall" | "expire"}``.
Match M: ``{"user": name | [names], "verb": v | [verbs], "resource": "leases" |
"services/status", "api_group": g, "namespace": ns, "name": n}`` (globs allowed).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.kubeapi import status_bodies
from lab.kubeapi.auth import MASTERS, TokenAuthenticator
from lab.kubeapi.faults import PRESETS, FaultInjector, Match, effect_from_json
from lab.kubeapi.pipeline import RequestInfo, UserInfo
from lab.kubeapi.rbac import forbidden_message
from lab.kubeapi.requestlog import MemoryRequestLog, Query, record_to_json

PREFIX = "/_lab/"

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ControlResponse:
    status: int
    body: JSON


class ControlError(Exception):
    """A request the control surface refuses; becomes a Status answer."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


def _bad(message: str) -> ControlError:
    return ControlError(400, "BadRequest", message)


def _not_found(message: str) -> ControlError:
    return ControlError(404, "NotFound", message)


def _user_json(user: UserInfo) -> JSON:
    return {"name": user.name, "groups": list(user.groups), "uid": user.uid}


_FLOAT_FILTERS = {"since", "after", "until"}


def _query_from_params(params: Mapping[str, Sequence[str]]) -> Query:
    """Filters from a URL query: repeated or comma-separated verb/status give several values."""
    filters: dict[str, Any] = {}
    for key, values in params.items():
        if key not in Query.__dataclass_fields__:
            raise _bad(f"unknown request-log filter {key!r}")
        items = (
            [v for value in values for v in value.split(",")]
            if key in ("verb", "status")
            else list(values)
        )
        try:
            if key in _FLOAT_FILTERS:
                filters[key] = float(items[-1])
            elif key == "status":
                filters[key] = tuple(int(v) for v in items)
            elif key == "verb":
                filters[key] = tuple(items)
            else:
                filters[key] = items[-1]
        except ValueError as err:
            raise _bad(f"bad value for {key!r}: {err}") from err
    return Query(**filters)


def _query_from_json(body: JSON) -> Query:
    filters: dict[str, Any] = {}
    for key, value in body.items():
        if key not in Query.__dataclass_fields__:
            raise _bad(f"unknown request-log filter {key!r}")
        if isinstance(value, list):
            value = tuple(value)
        filters[key] = value
    return Query(**filters)


Handler = Callable[["LabControl", list[str], Mapping[str, Sequence[str]], JSON], ControlResponse]


class LabControl:
    """Dispatches /_lab/ requests to the fault injector, token authenticator and request log."""

    def __init__(
        self,
        authenticator: TokenAuthenticator,
        faults: FaultInjector,
        request_log: MemoryRequestLog,
    ) -> None:
        self.authenticator = authenticator
        self.faults = faults
        self.request_log = request_log

    @staticmethod
    def handles(path: str) -> bool:
        return path.startswith(PREFIX) or path == PREFIX.rstrip("/")

    def handle(
        self,
        user: UserInfo | None,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]] | None = None,
        body: bytes | JSON | None = None,
    ) -> ControlResponse:
        try:
            if user is None:
                raise ControlError(401, "Unauthorized", "Unauthorized")
            if MASTERS not in user.groups:
                info = RequestInfo(
                    method=method, path=path, is_resource_request=False, verb=method.lower()
                )
                raise ControlError(403, "Forbidden", forbidden_message(user, info))
            return self._dispatch(method.upper(), path, query or {}, self._parse(body))
        except ControlError as err:
            return ControlResponse(
                err.code, status_bodies.status_dict(err.code, err.reason, err.message)
            )

    @staticmethod
    def _parse(body: bytes | JSON | None) -> JSON:
        if body is None or body == b"":
            return {}
        if isinstance(body, dict):
            return body
        try:
            parsed = json.loads(body)
        except ValueError as err:
            raise _bad(f"body is not JSON: {err}") from err
        if not isinstance(parsed, dict):
            raise _bad("body must be a JSON object")
        return parsed

    def _dispatch(
        self, method: str, path: str, params: Mapping[str, Sequence[str]], body: JSON
    ) -> ControlResponse:
        parts = [p for p in path[len(PREFIX) :].split("/") if p] if path.startswith(PREFIX) else []
        if not parts:
            return ControlResponse(
                200, {"endpoints": sorted({f"{m} {PREFIX}{p}" for m, p in _ROUTES})}
            )
        head, rest = parts[0], parts[1:]
        route = _ROUTES.get((method, head if not rest else f"{head}/{rest[0]}"))
        if route is not None and len(rest) <= 1:
            return route(self, [], params, body)
        route = _ROUTES.get((method, f"{head}/*"))
        if route is not None and len(rest) == 1:
            return route(self, rest, params, body)
        route = _ROUTES.get((method, head))
        if route is not None and not rest:
            return route(self, rest, params, body)
        raise _not_found(f"no control endpoint {method} {path}")

    # -- identity helpers -----------------------------------------------------------------------

    def _user_name(self, body: JSON, required: bool) -> str | None:
        if "token" in body:
            user = self.authenticator.user_for_token(str(body["token"]))
            if user is None:
                raise _bad("unknown token")
            return user.name
        if "user" in body:
            return str(body["user"])
        if required:
            raise _bad('give "user" (a user name) or "token"')
        return None

    # -- faults ---------------------------------------------------------------------------------

    def list_faults(
        self, _: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        return ControlResponse(200, {"items": [r.to_json() for r in self.faults.rules()]})

    def add_fault(
        self, _: list[str], __: Mapping[str, Sequence[str]], body: JSON
    ) -> ControlResponse:
        try:
            effect = effect_from_json(body.get("effect") or {})
            match = Match.from_json(body.get("match") or {})
            times = body.get("times")
            duration = body.get("duration")
            rule_id = self.faults.add(
                effect,
                match,
                times=None if times is None else int(times),
                skip=int(body.get("skip") or 0),
                probability=float(body.get("probability", 1.0)),
                priority=int(body.get("priority") or 0),
                duration=None if duration is None else float(duration),
                label=str(body.get("label") or ""),
            )
        except (ValueError, TypeError, KeyError) as err:
            raise _bad(str(err)) from err
        return ControlResponse(201, {"id": rule_id})

    def presets(self, _: list[str], __: Mapping[str, Sequence[str]], ___: JSON) -> ControlResponse:
        return ControlResponse(200, {"presets": dict(PRESETS)})

    def get_fault(
        self, rest: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        rule = self.faults.rule(rest[0])
        if rule is None:
            raise _not_found(f'fault rule "{rest[0]}" not found')
        return ControlResponse(200, rule.to_json())

    def remove_fault(
        self, rest: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        if not self.faults.remove(rest[0]):
            raise _not_found(f'fault rule "{rest[0]}" not found')
        return ControlResponse(200, {"removed": True})

    def clear_faults(
        self, _: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        return ControlResponse(200, {"removed": self.faults.clear()})

    def partition(
        self, _: list[str], __: Mapping[str, Sequence[str]], body: JSON
    ) -> ControlResponse:
        user = self._user_name(body, required=True)
        assert user is not None
        try:  # the injector checks mode and on_heal (and words the errors)
            rules = self.faults.partition(
                user, body.get("mode", "stall"), body.get("on_heal", "reset")
            )
        except ValueError as err:
            raise _bad(str(err)) from err
        return ControlResponse(200, {"user": user, "rules": rules})

    def heal(self, _: list[str], __: Mapping[str, Sequence[str]], body: JSON) -> ControlResponse:
        return ControlResponse(200, {"removed": self.faults.heal(self._user_name(body, False))})

    def partitions(
        self, _: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        return ControlResponse(200, {"users": self.faults.partitioned()})

    # -- request log ----------------------------------------------------------------------------

    def _records(self, query: Query) -> ControlResponse:
        try:
            found = self.request_log.query(query)
        except TypeError as err:
            raise _bad(str(err)) from err
        return ControlResponse(
            200, {"count": len(found), "items": [record_to_json(r) for r in found]}
        )

    def get_requests(
        self, _: list[str], params: Mapping[str, Sequence[str]], __: JSON
    ) -> ControlResponse:
        return self._records(_query_from_params(params))

    def query_requests(
        self, _: list[str], __: Mapping[str, Sequence[str]], body: JSON
    ) -> ControlResponse:
        return self._records(_query_from_json(body))

    def count_requests(
        self, _: list[str], params: Mapping[str, Sequence[str]], __: JSON
    ) -> ControlResponse:
        return ControlResponse(200, {"count": self.request_log.count(_query_from_params(params))})

    def clear_requests(
        self, _: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        self.request_log.clear()
        return ControlResponse(200, {})

    # -- tokens ---------------------------------------------------------------------------------

    def create_token(
        self, _: list[str], __: Mapping[str, Sequence[str]], body: JSON
    ) -> ControlResponse:
        kind = body.get("kind", "serviceaccount")
        token = body.get("token")
        token = None if token is None else str(token)
        try:
            if kind == "serviceaccount":
                namespace, name = body.get("namespace"), body.get("name")
                if not namespace or not name:
                    raise _bad('a serviceaccount token needs "namespace" and "name"')
                token = self.authenticator.add_service_account(str(namespace), str(name), token)
            elif kind == "user":
                if not body.get("name"):
                    raise _bad('a user token needs "name"')
                groups = [str(g) for g in body.get("groups") or []]
                token = self.authenticator.add_user(str(body["name"]), groups, token)
            elif kind == "admin":
                token = self.authenticator.add_admin(str(body.get("name") or "admin"), token)
            else:
                raise _bad(f"unknown token kind {kind!r}; known: serviceaccount, user, admin")
        except ValueError as err:
            raise _bad(str(err)) from err
        user = self.authenticator.user_for_token(token)
        assert user is not None
        return ControlResponse(201, {"token": token, "user": _user_json(user)})

    def list_tokens(
        self, _: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        items = [
            {"token": t.token, "user": _user_json(t.user)} for t in self.authenticator.issued()
        ]
        return ControlResponse(200, {"items": items})

    def revoke_token(
        self, rest: list[str], __: Mapping[str, Sequence[str]], ___: JSON
    ) -> ControlResponse:
        if not self.authenticator.revoke(urllib.parse.unquote(rest[0])):
            raise _not_found("token not found")
        return ControlResponse(200, {"removed": True})

    def revoke_user(
        self, _: list[str], __: Mapping[str, Sequence[str]], body: JSON
    ) -> ControlResponse:
        if not body.get("user"):
            raise _bad('give "user"')
        return ControlResponse(200, {"removed": self.authenticator.revoke_user(str(body["user"]))})


# (method, route) -> handler; "x/*" takes one path segment (an id or a token).
_ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "faults"): LabControl.list_faults,
    ("POST", "faults"): LabControl.add_fault,
    ("DELETE", "faults"): LabControl.clear_faults,
    ("GET", "faults/presets"): LabControl.presets,
    ("GET", "faults/*"): LabControl.get_fault,
    ("DELETE", "faults/*"): LabControl.remove_fault,
    ("POST", "partition"): LabControl.partition,
    ("POST", "heal"): LabControl.heal,
    ("GET", "partitions"): LabControl.partitions,
    ("GET", "requests"): LabControl.get_requests,
    ("POST", "requests/query"): LabControl.query_requests,
    ("GET", "requests/count"): LabControl.count_requests,
    ("DELETE", "requests"): LabControl.clear_requests,
    ("POST", "tokens"): LabControl.create_token,
    ("GET", "tokens"): LabControl.list_tokens,
    ("POST", "tokens/revoke"): LabControl.revoke_user,
    ("DELETE", "tokens/*"): LabControl.revoke_token,
}
