"""Error answers for fault injection, shaped exactly like the real apiserver's (or its proxy's).

Clients branch on these bodies: the Python elector creates a Lease only when a 404's body is JSON
with ``"code": 404``; ``client_go_retries`` honours an integer ``Retry-After``; code that expects
JSON must survive the plain-text 429 of API Priority and Fairness and an nginx HTML 502. So every
preset reproduces the real status, reason, message wording, details and headers (spec 3.11, 6.2);
messages that name an object are rendered per request from its RequestInfo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any

from lab.kubeapi import status_bodies
from lab.kubeapi.pipeline import FaultAction, RequestInfo, UserInfo
from lab.kubeapi.rbac import forbidden_message


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    """Answer with an error instead of handling. `preset` names a shape from PRESETS.

    `message`, `status`, `reason` and `retry_after` override the preset's defaults where the
    preset has them (``status`` is required by ``status``, ``text`` and ``html``).
    """

    preset: str = "internal"
    message: str = ""
    status: int = 0
    reason: str = ""
    retry_after: int | None = None


def _json_answer(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None, **headers: str
) -> FaultAction:
    body = status_bodies.encode(status_bodies.status_dict(code, reason, message, details))
    return FaultAction(kind="respond", status=code, body=body, headers=dict(headers))


def _text_answer(code: int, text: str, **headers: str) -> FaultAction:
    # Go's http.Error: text/plain with charset, nosniff, and a trailing newline.
    return FaultAction(
        kind="respond",
        status=code,
        body=(text + "\n").encode(),
        content_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", **headers},
    )


_NGINX_TITLES = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def _html_answer(code: int) -> FaultAction:
    """What an nginx load balancer in front of the apiserver sends."""
    title = _NGINX_TITLES.get(code) or f"{code} {HTTPStatus(code).phrase}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return FaultAction(kind="respond", status=code, body=page.encode(), content_type="text/html")


def _retry(seconds: int | None, default: int) -> int:
    return default if seconds is None else seconds


def render_answer(answer: ErrorAnswer, user: UserInfo, info: RequestInfo) -> FaultAction:
    """The FaultAction for `answer` on this request (messages name its resource and object)."""
    qualified = status_bodies.qualified_resource(info.api_group, info.resource)
    p = answer.preset
    if p == "internal":
        cause = answer.message or "injected fault"
        return _json_answer(
            500,
            "InternalError",
            f"Internal error occurred: {cause}",
            {"causes": [{"message": cause}]},
        )
    if p == "unavailable":
        return _json_answer(503, "ServiceUnavailable", answer.message or "service unavailable")
    if p == "timeout":
        msg = answer.message or "request did not complete within the allotted timeout"
        return _json_answer(504, "Timeout", f"Timeout: {msg}", {})
    if p == "server-timeout":
        seconds = _retry(answer.retry_after, 2)
        message = (
            f"The {info.verb} operation against {qualified} could not be completed at this "
            "time, please try again."
        )
        # As the real server: this Status names the verb, not the object, in details.name.
        details = status_bodies.details_for(
            replace(info, name=info.verb), retryAfterSeconds=seconds
        )
        headers = {"Retry-After": str(seconds)} if seconds else {}
        return _json_answer(500, "ServerTimeout", answer.message or message, details, **headers)
    if p == "too-many-requests":
        seconds = _retry(answer.retry_after, 1)
        message = answer.message or "Too many requests, please try again later."
        details = {"retryAfterSeconds": seconds} if seconds else {}
        headers = {"Retry-After": str(seconds)} if seconds else {}
        return _json_answer(429, "TooManyRequests", message, details, **headers)
    if p == "apf-429":
        seconds = _retry(answer.retry_after, 1)
        return _text_answer(
            429, "Too many requests, please try again later.", **{"Retry-After": str(seconds)}
        )
    if p == "shutdown-429":
        seconds = _retry(answer.retry_after, 5)
        return _text_answer(
            429,
            "The apiserver is shutting down, please try again later.",
            **{"Retry-After": str(seconds), "Connection": "close"},
        )
    if p == "conflict":
        reason = (
            answer.message
            or "the object has been modified; please apply your changes to the latest version and try again"
        )
        return _json_answer(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {qualified} "{info.name}": {reason}',
            status_bodies.details_for(info),
        )
    if p == "not-found":
        return _json_answer(
            404, "NotFound", f'{qualified} "{info.name}" not found', status_bodies.details_for(info)
        )
    if p == "forbidden":
        message = forbidden_message(user, info, answer.message)
        details = status_bodies.details_for(info) if info.is_resource_request else {}
        return _json_answer(403, "Forbidden", message, details)
    if p == "unauthorized":
        return _json_answer(401, "Unauthorized", answer.message or "Unauthorized")
    if p == "status":
        code = answer.status or 500
        return _json_answer(
            code, answer.reason or HTTPStatus(code).phrase.replace(" ", ""), answer.message
        )
    if p == "text":
        code = answer.status or 500
        return _text_answer(code, answer.message or HTTPStatus(code).phrase)
    if p == "html":
        return _html_answer(answer.status or 502)
    raise ValueError(f"unknown error preset {p!r}; known: {', '.join(PRESETS)}")


PRESETS: dict[str, str] = {
    "internal": "500 InternalError Status, details.causes[0].message",
    "unavailable": "503 ServiceUnavailable Status",
    "timeout": "504 Timeout Status (handler timeout)",
    "server-timeout": "500 ServerTimeout Status with retryAfterSeconds and Retry-After (etcd down)",
    "too-many-requests": "429 TooManyRequests Status with Retry-After",
    "apf-429": "429 text/plain from API Priority and Fairness, Retry-After: 1",
    "shutdown-429": "429 text/plain while shutting down, Retry-After: 5, Connection: close",
    "conflict": "409 Conflict Status (a racing writer without needing one)",
    "not-found": "404 NotFound Status",
    "forbidden": "403 Forbidden Status with the RBAC wording",
    "unauthorized": "401 Unauthorized Status (token rotation)",
    "status": "any code: Status with `status`, `reason`, `message`",
    "text": "any code: text/plain `message`",
    "html": "502/503/504 HTML page from an nginx load balancer",
}


def answer_to_json(answer: ErrorAnswer) -> dict[str, Any]:
    return {
        "preset": answer.preset,
        "message": answer.message,
        "status": answer.status,
        "reason": answer.reason,
        "retry_after": answer.retry_after,
    }


def answer_from_json(data: Mapping[str, Any]) -> ErrorAnswer:
    preset = str(data.get("preset", "internal"))
    if preset not in PRESETS:
        raise ValueError(f"unknown error preset {preset!r}; known: {', '.join(PRESETS)}")
    retry = data.get("retry_after")
    return ErrorAnswer(
        preset=preset,
        message=str(data.get("message") or ""),
        status=int(data.get("status") or 0),
        reason=str(data.get("reason") or ""),
        retry_after=None if retry is None else int(retry),
    )
