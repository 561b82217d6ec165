"""Label and field selectors with the grammar and error behaviour of apimachinery.

Label selectors: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>n`, `k<n`.
`!=` and `notin` also match objects without the key. Field selectors: `path=v`, `path==v`,
`path!=v` with `\\,` `\\=` `\\\\` escapes; which paths are allowed is the resource's business
(unknown paths are a 400, never silently ignored).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.kubeapi.errors import bad_request


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if not present:
            return False
        try:
            have = int(value)
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if self.op == ">" else have < want


LabelSelector = tuple[LabelRequirement, ...]

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _check_key(key: str, whole: str) -> None:
    if not _KEY.match(key) or len(key.split("/")[-1]) > 63:
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {whole!r}")


def _check_value(value: str, whole: str) -> None:
    if len(value) > 63 or not _VALUE.match(value):
        raise bad_request(
            f"unable to parse requirement: invalid label value: {value!r} in {whole!r}"
        )


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_RE = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*?)\s*$")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a labelSelector query value; raises a 400 ApiError on any syntax error."""
    if not text.strip():
        return ()
    requirements: list[LabelRequirement] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise bad_request(f"found '', expected: identifier in {text!r}")
        if m := _SET_RE.match(part):
            key, op, inner = m.group(1), m.group(2), m.group(3)
            _check_key(key, text)
            values = tuple(v.strip() for v in inner.split(",")) if inner.strip() else ()
            if not values:
                raise bad_request(
                    f"unable to parse requirement: for 'in', 'notin' operators, values set can't be empty in {text!r}"
                )
            for v in values:
                _check_value(v, text)
            requirements.append(LabelRequirement(key, op, tuple(sorted(set(values)))))
            continue
        if part.startswith("!"):
            key = part[1:].strip()
            _check_key(key, text)
            requirements.append(LabelRequirement(key, "!"))
            continue
        if m := _CMP_RE.match(part):
            key, op, value = m.group(1), m.group(2), m.group(3)
            _check_key(key, text)
            if op in (">", "<"):
                try:
                    int(value)
                except ValueError:
                    raise bad_request(
                        f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer in {text!r}"
                    ) from None
            else:
                if "," in value or " " in value:
                    raise bad_request(
                        f"unable to parse requirement: exactly one value expected in {text!r}"
                    )
                _check_value(value, text)
            requirements.append(LabelRequirement(key, "=" if op == "==" else op, (value,)))
            continue
        if re.match(r"^\S+$", part) and not any(c in part for c in "()=!<>"):
            _check_key(part, text)
            requirements.append(LabelRequirement(part, "exists"))
            continue
        raise bad_request(f"unable to parse requirement: {part!r} in {text!r}")
    return tuple(requirements)


def labels_match(selector: LabelSelector, obj: Mapping[str, Any]) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in selector)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    path: str
    equal: bool
    value: str


FieldSelector = tuple[FieldRequirement, ...]


def _unescape_split(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current += "\\" + text[i + 1]
            i += 2
            continue
        if ch == sep:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(text: str) -> FieldSelector:
    if not text.strip():
        return ()
    requirements: list[FieldRequirement] = []
    for part in _unescape_split(text, ","):
        for op, equal in (("!=", False), ("==", True), ("=", True)):
            idx = _find_unescaped(part, op)
            if idx >= 0:
                path = part[:idx].strip()
                value = _unescape(part[idx + len(op) :])
                requirements.append(FieldRequirement(path, equal, value))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
    return tuple(requirements)


def _find_unescaped(text: str, op: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(op, i):
            return i
        i += 1
    return -1


FieldGetter = Callable[[Mapping[str, Any]], str]


def check_field_selector(
    selector: FieldSelector, allowed: Mapping[str, FieldGetter], custom: bool
) -> None:
    """400 for any path the resource does not index, worded as the real server does."""
    for req in selector:
        if req.path in allowed:
            continue
        if custom:
            known = ", ".join(f'"{p}"' for p in allowed)
            raise bad_request(f'"{req.path}" is not a known field selector: only {known}')
        raise bad_request(f"field label not supported: {req.path}")


def fields_match(
    selector: FieldSelector, allowed: Mapping[str, FieldGetter], obj: Mapping[str, Any]
) -> bool:
    for req in selector:
        have = allowed[req.path](obj)
        if (have == req.value) != req.equal:
            return False
    return True


def dig(obj: Mapping[str, Any], path: str) -> Any:
    """Follow a dotted path through nested dicts; None when any step is missing."""
    current: Any = obj
    for step in path.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(step)
    return current


def field_getter(path: str) -> FieldGetter:
    def get(obj: Mapping[str, Any]) -> str:
        value = dig(obj, path)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get
