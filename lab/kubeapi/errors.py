"""API errors as the real kube-apiserver sends them: a `Status` body with code, reason, details.

Handlers raise ApiError; the server turns it into JSON with the right HTTP status (and a
`Retry-After` header when `retryAfterSeconds` is set). The constructors mirror
apimachinery's `pkg/api/errors` so message texts match what clients (and people) expect.
"""

from __future__ import annotations

from typing import Any

from lab.kubeapi.status_bodies import qualified_resource, status_dict


class ApiError(Exception):
    """A non-2xx answer carrying the complete Status object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        # One Status writer for handler errors and the answers around them (status_bodies);
        # empty details are left out here, as they always were.
        return status_dict(self.code, self.reason, self.message, self.details or None)


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    details.update(extra)
    return details


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified_resource(group, resource)} "{name}" not found',
        _details(name, group, resource),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified_resource(group, resource)} "{name}" already exists',
        _details(name, group, resource),
    )


def conflict(resource: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(group, resource)} "{name}": {why}',
        _details(name, group, resource),
    )


STALE = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def stale(resource: str, group: str, name: str) -> ApiError:
    return conflict(resource, group, name, STALE)


class Cause:
    """One field error, as field.Error: reason FieldValueInvalid/Required/NotSupported/..."""

    __slots__ = ("detail", "field", "reason")

    def __init__(self, reason: str, field: str, detail: str) -> None:
        self.reason = reason
        self.field = field
        self.detail = detail

    def text(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


def invalid(kind: str, group: str, name: str, causes: list[Cause], label: str = "") -> ApiError:
    """422 Invalid. `label` is what the message names: a Kind, or `resource.group`."""
    who = label or (f"{kind}.{group}" if group else kind)
    texts = [c.text() for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422,
        "Invalid",
        f'{who} "{name}" is invalid: {joined}',
        _details(
            name,
            group,
            kind,
            causes=[{"reason": c.reason, "message": c.detail, "field": c.field} for c in causes],
        ),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(verb: str, kind: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f'{verb} is not supported on resources of kind "{kind}"',
        {"kind": kind},
    )


def unsupported_media_type(accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def too_large_resource_version(requested: int, current: int) -> ApiError:
    return ApiError(
        504,
        "Timeout",
        f"Too large resource version: {requested}, current: {current}",
        {
            "causes": [
                {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
            ],
            "retryAfterSeconds": 1,
        },
        {"Retry-After": "1"},
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str, resource: str, group: str, name: str) -> ApiError:
    return ApiError(403, "Forbidden", message, _details(name, group, resource))


def route_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})
