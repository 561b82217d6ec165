from __future__ import annotations

import pytest

from agent.policy.interfaces import InterfaceRegexError, compile_interfaces, select_devices

DEVICES = ["eth0", "veth0", "eth1", "ens3"]  # ifindex order


def test_no_patterns_means_every_selected_device() -> None:
    assert select_devices(compile_interfaces([]), DEVICES) == DEVICES


def test_unanchored_like_go_match_string() -> None:
    assert select_devices(compile_interfaces(["eth0"]), DEVICES) == ["eth0", "veth0"]
    assert select_devices(compile_interfaces(["^eth[0-9]+"]), DEVICES) == ["eth0", "eth1"]


def test_patterns_are_ored_in_policy_order_then_device_order() -> None:
    assert select_devices(compile_interfaces(["^ens", "^eth"]), DEVICES) == ["ens3", "eth0", "eth1"]
    assert select_devices(compile_interfaces(["eth1", "eth"]), DEVICES) == [
        "eth1",
        "eth0",
        "veth0",
    ]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[eth", "error parsing regexp: missing closing ]: `[eth`"),
        ("eth(", "error parsing regexp: missing closing ): `eth(`"),
        ("eth)", "error parsing regexp: unexpected ): `eth)`"),
        ("*eth", "error parsing regexp: missing argument to repetition operator: `*`"),
        ("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
        ("\\q", "error parsing regexp: invalid escape sequence: `\\q`"),
        ("[z-a]", "error parsing regexp: invalid character class range: `z-a`"),
        ("eth\\", "error parsing regexp: trailing backslash at end of expression: ``"),
    ],
)
def test_bad_patterns_give_gos_error_text(pattern: str, message: str) -> None:
    with pytest.raises(InterfaceRegexError) as e:
        compile_interfaces(["eth0", pattern])
    assert str(e.value) == message


def test_linear_time_engine_does_not_hang_on_pathological_patterns() -> None:
    # (a+)+$ is catastrophic for backtracking engines such as Python's re.
    rx = compile_interfaces(["(a+)+$"])
    assert select_devices(rx, ["a" * 40 + "!"]) == []
