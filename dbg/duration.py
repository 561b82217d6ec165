"""Go-style durations for ``--watch``: ``100ms``, ``2s``, ``1m``, ``1m30s``, ``1.5s``.

A bare number is taken as seconds (``-w 2`` is ``-w 2s``), a convenience Go does not offer.
"""

from __future__ import annotations

import re

from dbg.errors import DbgError

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
DEFAULT_WATCH = "1s"


def is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except DbgError:
        return False
    return True


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in ``text``; DbgError if it is not a positive duration."""
    s = text.strip()
    if _NUMBER.fullmatch(s):
        seconds = float(s)
    else:
        pos, seconds = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s) or not s:
            raise DbgError(
                f'invalid {what} "{text}": use a number with a unit, like 100ms, 2s or 1m'
            )
    if seconds <= 0:
        raise DbgError(f'invalid {what} "{text}": it must be greater than zero')
    return seconds
