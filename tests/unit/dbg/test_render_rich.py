"""``-o table`` on a terminal: rich, with the same cells, colours and a Status column."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from dbg.output import Grid, Line, Output, write_grid
from dbg.statedb_ops import show_table

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _colour_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)


def test_devices_on_a_terminal(state_dir: Path) -> None:
    out = Terminal()
    show_table(state_dir, "devices", Output.TABLE, out)
    text = out.getvalue()
    assert "\x1b[" in text  # coloured
    plain = ANSI.sub("", text)
    assert "Selected" in plain and "fe80::42:acff:fe13:3" in plain and "# " not in plain
    assert "\x1b[32mtrue" in text  # selected in green


def test_l2_announce_on_a_terminal_shows_the_reconcile_status(state_dir: Path) -> None:
    out = Terminal()
    show_table(state_dir, "l2-announce", Output.TABLE, out)
    plain = ANSI.sub("", out.getvalue())
    assert "Status" in plain
    assert "Error: map update: no space left on device" in plain
    assert "Done" in plain and "Pending" in plain


def test_plain_output_on_a_terminal_stays_plain(state_dir: Path) -> None:
    out = Terminal()
    show_table(state_dir, "l2-announce", Output.PLAIN, out)
    assert out.getvalue().startswith("# IP            NetworkInterface\n")


def test_too_wide_for_the_terminal_keeps_every_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    grid = Grid(("Name", "Addresses"), [Line(("eth0", "10.0.0.1, " * 8), ("", ""))])
    out = Terminal()
    write_grid(grid, Output.TABLE, out)
    plain = ANSI.sub("", out.getvalue())
    assert ("10.0.0.1, " * 8).strip() in plain.replace("\n", "")


def test_deleted_rows_are_struck_through() -> None:
    from dbg import render_rich

    out = Terminal()
    render_rich.print_aligned([Line(("10.0.0.1", "eth0"), deleted=True)], (), [11], out)
    text = out.getvalue()
    assert "\x1b[9;31m- 10.0.0.1" in text


def test_watch_on_a_terminal_aligns_batches(state_dir: Path) -> None:
    from common.tables import L2_ANNOUNCE
    from dbg.watch import watch

    def stop(_seconds: float) -> None:
        raise KeyboardInterrupt

    out = Terminal()
    watch(state_dir, L2_ANNOUNCE, Output.TABLE, 0.01, out, sleep=stop)
    lines = ANSI.sub("", out.getvalue()).splitlines()
    assert lines[0].split() == ["#", "IP", "NetworkInterface", "Status"]
    assert lines[1].split() == [
        "198.51.100.9",
        "eth1",
        "Error:",
        "map",
        "update:",
        "no",
        "space",
        "left",
        "on",
        "device",
    ]
    assert lines[0].index("NetworkInterface") == lines[1].index("eth1")
