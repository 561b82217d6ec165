"""Policy ``interfaces``: Go RE2 regular expressions, unanchored, OR-ed, over the selected devices
in ifindex order, as the reference gathers them. google-re2 is the same engine as Go's regexp;
its error texts are rewritten to Go's (``error parsing regexp: missing closing ]: `[eth` ``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every bad pattern to stderr

# RE2 (C++) error text -> Go regexp ErrorCode text
_GO_CODES = (
    ("missing ]", "missing closing ]"),
    ("missing )", "missing closing )"),
    ("unexpected )", "unexpected )"),
    ("bad repetition operator", "invalid nested repetition operator"),
    ("no argument for repetition operator", "missing argument to repetition operator"),
    ("invalid escape sequence", "invalid escape sequence"),
    ("invalid character class range", "invalid character class range"),
    ("invalid character class", "invalid character class"),
    ("trailing \\", "trailing backslash at end of expression"),
    ("invalid named capture group", "invalid named capture"),
    ("duplicate capture group name", "duplicate capture group name"),
    ("invalid repetition size", "invalid repeat count"),
    ("invalid perl operator", "invalid or unsupported Perl syntax"),
    ("invalid UTF-8", "invalid UTF-8"),
    ("pattern too large", "expression too large"),
)


class InterfaceRegexError(ValueError):
    """str() is Go's regexp compile error, the text of the bad-interface-regex condition."""


def _go_error(pattern: str, err: Exception) -> str:
    raw = err.args[0] if err.args else b""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    code, _, arg = text.partition(": ")
    for cpp, go in _GO_CODES:
        if code.startswith(cpp):
            if cpp == "trailing \\":
                arg = ""
            return f"error parsing regexp: {go}: `{arg}`"
    return f"error parsing regexp: {text}: `{pattern}`"


def compile_interfaces(patterns: Sequence[str]) -> list[Any]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re2.compile(p, options=_OPTIONS))
        except re2.error as e:
            raise InterfaceRegexError(_go_error(p, e)) from None
    return compiled


def select_devices(patterns: Sequence[Any], selected_devices: Sequence[str]) -> list[str]:
    """Devices for a policy: all selected ones if no pattern, else per pattern, per device in
    ifindex order, each once."""
    if not patterns:
        return list(selected_devices)
    out: list[str] = []
    for rx in patterns:
        for name in selected_devices:
            if name not in out and rx.search(name):
                out.append(name)
    return out
