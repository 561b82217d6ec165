"""Policy status conditions: what to write, and only when it changes.

The reference rewrites every condition it checks, from every node, on every pass, refreshing
``lastTransitionTime`` each time. Here a condition is written only when its status, message or
observedGeneration differs from what the policy already carries, and ``lastTransitionTime``
moves only when the status flips. The fields are the reference's: reason always ``error``, status
``"True"`` with the error message, or ``"False"`` with an empty message once fixed; a condition
that does not exist is never created just to say False.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.leases.record import micro_time

REASON = "error"
# metav1.Condition's limit, enforced by the CRD's schema: a longer message (Go's regexp error
# quotes the whole expression) would make every write of the condition fail.
MAX_MESSAGE_BYTES = 32768
_CUT = " ..."


def bounded_message(message: str) -> str:
    """``message`` cut to fit a condition (whole UTF-8 characters, ending in " ...")."""
    raw = message.encode()
    if len(raw) <= MAX_MESSAGE_BYTES:
        return message
    return raw[: MAX_MESSAGE_BYTES - len(_CUT)].decode(errors="ignore") + _CUT


def _rfc3339(wall: float) -> str:
    # metav1.Time: RFC 3339 with seconds, as the seed shows (2023-05-12T15:39:01Z).
    return micro_time(wall).split(".")[0] + "Z"


def updated_conditions(
    existing: list[dict[str, Any]] | None,
    checks: Mapping[str, str | None],
    generation: int,
    wall: float,
) -> list[dict[str, Any]] | None:
    """The new ``status.conditions``, or None when nothing needs writing."""
    conditions = [dict(c) for c in (existing or [])]
    by_type = {c.get("type"): c for c in conditions}
    changed = False
    for ctype, error in checks.items():
        current = by_type.get(ctype)
        if error is None and current is None:
            continue
        status = "True" if error is not None else "False"
        message = bounded_message(error or "")
        if current is not None and (
            current.get("status"),
            current.get("message", ""),
            current.get("observedGeneration"),
            current.get("reason"),
        ) == (status, message, generation, REASON):
            continue
        new = {
            "type": ctype,
            "status": status,
            "observedGeneration": generation,
            "lastTransitionTime": (
                current["lastTransitionTime"]
                if current is not None
                and current.get("status") == status
                and current.get("lastTransitionTime")
                else _rfc3339(wall)
            ),
            "reason": REASON,
            "message": message,
        }
        if current is None:
            conditions.append(new)
        else:
            conditions[conditions.index(current)] = new
        by_type[ctype] = new
        changed = True
    return conditions if changed else None
