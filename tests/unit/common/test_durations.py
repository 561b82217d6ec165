from __future__ import annotations

import pytest

from common.durations import format_duration, parse_duration, parse_duration_ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("15s", 15_000_000_000),
        ("500ms", 500_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5h", 5_400_000_000_000),
        ("200ms", 200_000_000),
        ("1us", 1_000),
        ("1µs", 1_000),
        ("3ns", 3),
        (".5s", 500_000_000),
        ("1h2m3.5s", 3_723_500_000_000),
        ("-2s", -2_000_000_000),
    ],
)
def test_parse_go_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "15", "s", "1x", "1s2", "1 s", "one", "--1s", "1.s.5"])
def test_reject_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (15, "15s"),
        (5, "5s"),
        (2, "2s"),
        (0.2, "200ms"),
        (0.5, "500ms"),
        (90, "1m30s"),
        (3600, "1h0m0s"),
        (1.5, "1.5s"),
        (0, "0s"),
        (2.5e-6, "2.5µs"),
    ],
)
def test_format_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
