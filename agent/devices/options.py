"""User options of device selection (`devices`, `force-device-detection`) and their parsing.

The `devices` option is a list of interface names where an entry ending in ``+`` is a prefix
wildcard (``eth+`` matches ``eth``, ``eth0`` and ``eth10``); any other entry must match exactly.
There are no regexes and no other globs: the reference accepts exactly this, and operators copy
values between the two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Linux IFNAMSIZ is 16 bytes including the terminating NUL.
_MAX_NAME_BYTES = 15
_SEPARATORS = re.compile(r"\s+")

NAME_RULES = (
    "an interface name is 1-15 bytes, without '/', ':' or whitespace, and not '.' or '..'; "
    "append '+' for a prefix match (e.g. eth+)"
)


@dataclass(frozen=True, slots=True)
class DevicesOptions:
    """How the devices controller picks the devices l2announcer uses.

    devices:
        Interface names to use, as given by the ``devices`` config key. Entries ending in ``+``
        are prefix wildcards. Default ``()``: no filter, devices are auto-detected by the rules
        of ``agent.devices.selection``. When set, a matching device (that is up and has an
        address) is selected without further checks, because an operator who names a device
        knows better than the heuristics (e.g. a bridge, or a veth in kind).
    force_device_detection:
        Default ``False``. When ``True``, a device that matches no ``devices`` entry is not
        rejected but goes through auto-detection, so ``devices`` only adds to what would be
        detected anyway (useful to add a bridge while keeping the detected uplinks).
    """

    devices: tuple[str, ...] = ()
    force_device_detection: bool = False

    def __post_init__(self) -> None:
        for entry in self.devices:
            _check_entry(entry)

    @property
    def has_filter(self) -> bool:
        return bool(self.devices)

    def matches(self, name: str) -> bool:
        """Whether ``name`` matches an entry of ``devices`` (exact, or prefix for ``x+``)."""
        return matches_device_filter(name, self.devices)

    def filter_text(self) -> str:
        """The filter as the reference prints it in reasons: ``[eth0 eth+]``."""
        return "[" + " ".join(self.devices) + "]"


def matches_device_filter(name: str, entries: tuple[str, ...]) -> bool:
    for entry in entries:
        if entry.endswith("+"):
            if name.startswith(entry.rstrip("+")):
                return True
        elif name == entry:
            return True
    return False


def devices_option_from_string(value: str) -> tuple[str, ...]:
    """Parse the `devices` option: names separated by spaces and/or commas.

    ``"eth0 eth+,ens3"`` gives ``("eth0", "eth+", "ens3")``. An empty or blank value means no
    filter. Duplicates are dropped, order is kept. An empty entry (``"eth0,,eth1"``, a leading
    or trailing comma) or an invalid name raises ValueError naming the entry and what is allowed.
    """
    if not value.strip():
        return ()
    entries: list[str] = []
    for part in value.split(","):
        names = _SEPARATORS.split(part.strip())
        if names == [""]:
            raise ValueError(f"devices {value!r}: empty entry between commas; {NAME_RULES}")
        for name in names:
            _check_entry(name)
            if name not in entries:
                entries.append(name)
    return tuple(entries)


def _check_entry(entry: str) -> None:
    name = entry.rstrip("+") if entry.endswith("+") else entry
    problem = _name_problem(name, wildcard=entry != name)
    if problem:
        raise ValueError(f"devices entry {entry!r}: {problem}; {NAME_RULES}")


def _name_problem(name: str, *, wildcard: bool) -> str | None:
    if not name:
        return "empty name" if not wildcard else "a lone '+' would match every device"
    if len(name.encode()) > _MAX_NAME_BYTES:
        return f"{len(name.encode())} bytes is longer than {_MAX_NAME_BYTES}"
    if not wildcard and name in (".", ".."):
        return "'.' and '..' are not interface names"
    for ch in name:
        if ch in "/:" or ch.isspace():
            return f"contains {ch!r}"
    return None


__all__ = [
    "NAME_RULES",
    "DevicesOptions",
    "devices_option_from_string",
    "matches_device_filter",
]
