"""Go-syntax durations (``15s``, ``500ms``, ``1m30s``), as the reference's flags take them.

Parsing follows Go's ``time.ParseDuration``: a sequence of decimal numbers, each with a unit
(ns, us, µs, ms, s, m, h); a lone ``0`` is allowed. Formatting follows ``Duration.String``, so
``l2dbg config --all`` prints ``15s`` rather than the reference's ``1.5e+10`` (decision 9).
"""

from __future__ import annotations

import re
from decimal import Decimal

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


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
    """Seconds of a Go duration string."""
    return parse_duration_ns(text) / 1e9


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
