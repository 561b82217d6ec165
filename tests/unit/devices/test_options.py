"""The `devices` option: parsing, validation and matching."""

from __future__ import annotations

import pytest

from agent.devices.options import DevicesOptions, devices_option_from_string


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("eth0 eth+,ens3", ("eth0", "eth+", "ens3")),
        ("eth0, eth1", ("eth0", "eth1")),
        ("  eth0\teth1\n", ("eth0", "eth1")),
        ("eth0 eth0", ("eth0",)),
        ("", ()),
        ("   ", ()),
        ("bond0.100", ("bond0.100",)),
        ("a" * 15, ("a" * 15,)),
        ("ens+", ("ens+",)),
    ],
)
def test_parse(text: str, parsed: tuple[str, ...]) -> None:
    assert devices_option_from_string(text) == parsed


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("eth0,,eth1", "empty entry"),
        ("eth0,", "empty entry"),
        (",eth0", "empty entry"),
        ("+", "lone '+'"),
        ("a" * 16, "longer than 15"),
        ("eth/0", "contains '/'"),
        ("eth0:1", "contains ':'"),
        (".", "'.' and '..'"),
        ("..", "'.' and '..'"),
    ],
)
def test_invalid_values_are_refused_with_what_is_allowed(text: str, complaint: str) -> None:
    with pytest.raises(ValueError) as e:
        devices_option_from_string(text)
    assert complaint in str(e.value)
    assert "1-15 bytes" in str(e.value)


def test_options_validate_entries_too() -> None:
    with pytest.raises(ValueError, match="contains"):
        DevicesOptions(devices=("bad name",))


@pytest.mark.parametrize(
    ("entries", "name", "matches"),
    [
        (("eth+",), "eth", True),
        (("eth+",), "eth0", True),
        (("eth+",), "eth10", True),
        (("eth+",), "et", False),
        (("eth+",), "veth0", False),
        (("eth0",), "eth0", True),
        (("eth0",), "eth01", False),
        (("eth0", "ens+"), "ens3", True),
        ((), "eth0", False),
    ],
)
def test_matching(entries: tuple[str, ...], name: str, matches: bool) -> None:
    assert DevicesOptions(devices=entries).matches(name) is matches


def test_filter_text_is_the_reference_format() -> None:
    assert DevicesOptions(devices=("eth0", "eth+")).filter_text() == "[eth0 eth+]"
