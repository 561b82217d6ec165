"""Kubernetes label selectors (matchLabels + matchExpressions) with apimachinery's semantics and
error texts, e.g. the seed's
``values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty``.

``None`` (no selector) matches everything, as in the reference; an empty selector ``{}`` too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.policy.goformat import go_quote, go_strings

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_VALUE_MSG = (
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

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class SelectorError(ValueError):
    """An invalid selector; str() is the text the policy condition carries."""


def _key_errors(key: str) -> list[str]:
    """apimachinery's IsQualifiedName, as ``key: Invalid value: ...`` errors."""
    problems: list[str] = []
    name = key
    if "/" in key:
        prefix, _, name = key.partition("/")
        if "/" in name:
            problems.append(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
                "must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',"
                "  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?"
                "[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. "
                "'example.com/MyName')"
            )
            return [f"key: Invalid value: {go_quote(key)}: {p}" for p in problems]
        if not prefix:
            problems.append("prefix part must be non-empty")
        elif len(prefix) > 253:
            problems.append("prefix part must be no more than 253 characters")
        elif not _DNS1123_SUBDOMAIN.match(prefix):
            problems.append(_SUBDOMAIN_MSG)
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _NAME.match(name):
        problems.append(_NAME_MSG)
    return [f"key: Invalid value: {go_quote(key)}: {p}" for p in problems]


def _value_errors(key: str, index: int, value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _VALUE.match(value):
        out.append(_VALUE_MSG)
    return [f"values[{index}][{key}]: Invalid value: {go_quote(value)}: {p}" for p in out]


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
    errs = _key_errors(key)
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
        errs.extend(_value_errors(key, i, v))
    if errs:
        # field.ErrorList.ToAggregate(): one error alone, several as [a, b].
        raise SelectorError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return Requirement(key, "In" if op == "Equals" else op, frozenset(vals))


@dataclass(frozen=True, slots=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


EVERYTHING = Selector(())


def compile_selector(spec: Mapping[str, Any] | None) -> Selector:
    """A selector from a LabelSelector object (as JSON); None selects everything."""
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
