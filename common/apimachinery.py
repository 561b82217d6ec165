"""Kubernetes object-name and label rules, and label selectors, with apimachinery's semantics and
its error texts byte for byte, e.g. for a ``NotIn`` without values:
``values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty``.
Operators read these texts in policy conditions and compare them with what Cilium prints, so
they keep Go's ``%#v`` spelling of the offending values.

``None`` (no selector) selects everything, as Cilium's policy handling does; an empty selector
``{}`` too, as in apimachinery.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# -- Go's %#v of the values apimachinery puts in its errors -----------------------------------


def go_quote(s: str) -> str:
    """Go's ``%q``; JSON escaping agrees with it for the printable ASCII labels are made of."""
    return json.dumps(s, ensure_ascii=False)


def go_strings(values: Sequence[str] | None) -> str:
    """Go's ``%#v`` of a ``[]string``: ``[]string(nil)``, ``[]string{"a", "b"}``."""
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"


# -- names and label values ------------------------------------------------------------------

QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_QUALIFIED_NAME_MSG = (
    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS "
    "subdomain prefix and '/' (e.g. 'example.com/MyName')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  "
    "or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def is_dns1123_subdomain(value: str) -> bool:
    """A lowercase RFC 1123 subdomain, as object names and label-key prefixes must be."""
    return len(value) <= DNS1123_SUBDOMAIN_MAX and _DNS1123_SUBDOMAIN.match(value) is not None


def qualified_name_problems(value: str) -> list[str]:
    """What apimachinery's IsQualifiedName finds wrong with a label key (empty: nothing)."""
    problems: list[str] = []
    name = value
    if "/" in value:
        prefix, _, name = value.partition("/")
        if "/" in name:
            return [_QUALIFIED_NAME_MSG]
        if not prefix:
            problems.append("prefix part must be non-empty")
        elif len(prefix) > DNS1123_SUBDOMAIN_MAX:
            problems.append(f"prefix part must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
        elif not _DNS1123_SUBDOMAIN.match(prefix):
            problems.append(_SUBDOMAIN_MSG)
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        problems.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    elif not _NAME.match(name):
        problems.append(_NAME_MSG)
    return problems


def label_value_problems(value: str) -> list[str]:
    """What apimachinery's IsValidLabelValue finds wrong with a label value (empty: nothing)."""
    problems = []
    if len(value) > LABEL_VALUE_MAX:
        problems.append(f"must be no more than {LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.match(value):
        problems.append(_LABEL_VALUE_MSG)
    return problems


# -- label selectors -------------------------------------------------------------------------

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class SelectorError(ValueError):
    """An invalid selector; str() is apimachinery's text for it."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present


def _requirement(key: str, op: str, values: list[str] | None) -> Requirement:
    errs = [f"key: Invalid value: {go_quote(key)}: {p}" for p in qualified_name_problems(key)]
    vals = values or []
    if op in ("In", "NotIn") and not vals:
        errs.append(
            f"values: Invalid value: {go_strings(values)}: "
            "for 'in', 'notin' operators, values set can't be empty"
        )
    elif op == "Equals" and len(vals) != 1:
        errs.append(
            f"values: Invalid value: {go_strings(values)}: "
            "exact-match compatibility requires one single value"
        )
    elif op in ("Exists", "DoesNotExist") and vals:
        errs.append(
            f"values: Invalid value: {go_strings(values)}: "
            "values set must be empty for exists and does not exist"
        )
    for i, v in enumerate(vals):
        errs.extend(
            f"values[{i}][{key}]: Invalid value: {go_quote(v)}: {p}"
            for p in label_value_problems(v)
        )
    if errs:
        # As apimachinery's field.ErrorList.ToAggregate(): one error alone, several as [a, b].
        raise SelectorError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return Requirement(key, "In" if op == "Equals" else op, frozenset(vals))


@dataclass(frozen=True, slots=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


EVERYTHING = Selector(())


def compile_selector(spec: Mapping[str, Any] | None) -> Selector:
    """A selector from a LabelSelector object (as JSON); None selects everything.
    SelectorError if it is invalid."""
    if spec is None:
        return EVERYTHING
    reqs: list[Requirement] = []
    for key, value in sorted((spec.get("matchLabels") or {}).items()):
        reqs.append(_requirement(str(key), "Equals", [str(value)]))
    for expr in spec.get("matchExpressions") or []:
        op = str(expr.get("operator", ""))
        if op not in OPERATORS:
            raise SelectorError(f"{go_quote(op)} is not a valid label selector operator")
        raw = expr.get("values")
        values = None if raw is None else [str(v) for v in raw]
        reqs.append(_requirement(str(expr.get("key", "")), op, values))
    return Selector(tuple(reqs))
