"""Go-syntax durations (``15s``, ``500ms``, ``1m30s``), as the agent's flags and l2dbg take them.

Parsing follows Go's ``time.ParseDuration``: a sequence of decimal numbers, each with a unit
(ns, us, µs, ms, s, m, h); a lone ``0`` is allowed. Formatting follows ``Duration.String``, so
``l2dbg config --all`` prints ``15s`` where Cilium's flag dump prints nanoseconds as a float
(``1.5e+10``), which nobody reads at a glance.

``parse_interval`` is the forgiving form for an interval typed at a prompt (``l2dbg -w 2``): a
bare number is seconds, a convenience Go does not offer, and the interval must be positive.

Only the standard library is imported: l2dbg loads this module on every start.
"""

from __future__ import annotations

import re
from decimal import Decimal

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # MICRO SIGN, as Go accepts
    "μs": 1_000,  # GREEK SMALL LETTER MU, as Go accepts
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration_ns(text: str) -> int:
    """Nanoseconds of a Go duration string; ValueError if it is not one."""
    s = text.strip()
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        total += Decimal(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    return sign * int(total)


def parse_duration(text: str) -> float:
    """Seconds of a Go duration string; ValueError if it is not one."""
    return parse_duration_ns(text) / 1e9


def parse_interval(text: str, what: str = "duration") -> float:
    """Seconds of a positive interval: a Go duration or a bare number of seconds.

    ValueError otherwise, its text naming ``what`` and saying how to write one, ready to show
    to the person who typed it."""
    s = text.strip()
    try:
        seconds = float(s) if _NUMBER.fullmatch(s) else parse_duration(s)
    except ValueError:
        raise ValueError(
            f'invalid {what} "{text}": use a number with a unit, like 100ms, 2s or 1m'
        ) from None
    if seconds <= 0:
        raise ValueError(f'invalid {what} "{text}": it must be greater than zero')
    return seconds


def is_interval(text: str) -> bool:
    """Whether ``parse_interval`` accepts ``text``."""
    try:
        parse_interval(text)
    except ValueError:
        return False
    return True


def format_duration(seconds: float) -> str:
    """Go's Duration.String() of ``seconds``: 15s, 500ms, 1m30s, 1h0m0s, 0s."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(Decimal(ns) / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    secs = _trim(Decimal(rest) / 1_000_000_000)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def _trim(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
