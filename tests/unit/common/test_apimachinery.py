from __future__ import annotations

from typing import Any

import pytest

from common.apimachinery import (
    SelectorError,
    compile_selector,
    is_dns1123_subdomain,
    label_value_problems,
    qualified_name_problems,
)

LABELS = {"app": "red", "io.kubernetes.service.namespace": "default", "tier": "web"}


@pytest.mark.parametrize(
    ("spec", "matches"),
    [
        (None, True),
        ({}, True),
        ({"matchLabels": {"app": "red"}}, True),
        ({"matchLabels": {"app": "blue"}}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["red", "x"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["red"]}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"io.kubernetes.service.namespace": "default"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}],
            },
            False,
        ),
    ],
)
def test_kubernetes_label_selector_semantics(spec: dict[str, Any] | None, matches: bool) -> None:
    assert compile_selector(spec).matches(LABELS) is matches


def test_the_seeds_invalid_selector_gives_the_seeds_message() -> None:
    with pytest.raises(SelectorError) as e:
        compile_selector({"matchExpressions": [{"key": "something", "operator": "NotIn"}]})
    assert str(e.value) == (
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
    )


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            {"key": "a", "operator": "In", "values": []},
            "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"key": "a", "operator": "Exists", "values": ["x"]},
            'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist',
        ),
        ({"key": "a", "operator": "Equal"}, '"Equal" is not a valid label selector operator'),
        (
            {"key": "bad key", "operator": "Exists"},
            'key: Invalid value: "bad key": name part must consist of alphanumeric characters, '
            "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
            "'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
    ],
)
def test_invalid_expressions(expr: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError) as e:
        compile_selector({"matchExpressions": [expr]})
    assert str(e.value) == message


def test_several_errors_are_aggregated_like_apimachinery() -> None:
    with pytest.raises(SelectorError) as e:
        compile_selector({"matchExpressions": [{"key": "", "operator": "In"}]})
    text = str(e.value)
    assert text.startswith('[key: Invalid value: "": name part must be non-empty, values: ')
    assert text.endswith("]")


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("app", True),
        ("node-role.kubernetes.io/control-plane", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("Example.com/x", False),
        ("/x", False),
        ("a/b/c", False),
        ("-app", False),
    ],
)
def test_qualified_names(key: str, valid: bool) -> None:
    assert (qualified_name_problems(key) == []) is valid


def test_label_values_may_be_empty_but_not_too_long() -> None:
    assert label_value_problems("") == []
    assert label_value_problems("a" * 64) == ["must be no more than 63 characters"]


def test_dns1123_subdomains_are_lowercase_and_bounded() -> None:
    assert is_dns1123_subdomain("example.com")
    assert not is_dns1123_subdomain("Example.com")
    assert not is_dns1123_subdomain("a" * 254)
