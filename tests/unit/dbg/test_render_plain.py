"""The plain layout against the reference's own examples (its ``devices`` and ``l2-announce``
tables, laid out by its tabwriter rules), byte for byte."""

from __future__ import annotations

from common.tables import DEVICES, L2_ANNOUNCE
from common.tables.l2_announce import L2AnnounceEntry
from dbg.render_plain import TabWriter, format_table, header_cells
from tests.unit.dbg.fixtures import ETH0, LO

DEVICES_EXAMPLE = (
    "# Name   Index   Selected   Type     MTU     HWAddr              Flags"
    "                            Addresses\n"
    "lo       1       false      device   65536                       up|loopback|running"
    "              127.0.0.1, ::1\n"
    "eth0     50      true       veth     1500    02:42:ac:13:00:03   up|broadcast|multicast|running"
    "   172.19.0.3, fc00:c111::3, fe80::42:acff:fe13:3\n"
)


def test_devices_example_of_the_reference() -> None:
    rows = [DEVICES.format_row(d) for d in (LO, ETH0)]
    assert format_table(DEVICES.header, rows) == DEVICES_EXAMPLE


def test_l2_announce_example_of_the_reference() -> None:
    row = L2_ANNOUNCE.format_row(L2AnnounceEntry("10.0.10.0", "eth0"))
    assert (
        format_table(L2_ANNOUNCE.header, [row])
        == "# IP        NetworkInterface\n10.0.10.0   eth0\n"
    )


def test_empty_table_is_its_header() -> None:
    assert format_table(L2_ANNOUNCE.header, []) == "# IP   NetworkInterface\n"


def test_width_is_longest_cell_plus_three_at_least_six() -> None:
    text = format_table(("A", "B", "C"), [("xy", "abcdefgh", "z")])
    # "# A" is 3 wide -> 6 (the minimum); "abcdefgh" is 8 wide -> 11; the last column unpadded.
    assert text == "# A   B          C\nxy    abcdefgh   z\n"


def test_last_column_is_never_padded_and_lines_have_no_trailing_spaces() -> None:
    text = format_table(("Name", "Addresses"), [("eth1", ""), ("eth0", "10.0.0.1")])
    assert text == "# Name   Addresses\neth1\neth0     10.0.0.1\n"
    assert all(not line.endswith(" ") for line in text.splitlines())


def test_single_column_table() -> None:
    assert format_table(("count",), [("3",)]) == "# count\n3\n"


def test_tabs_and_newlines_in_cells_stay_in_their_cell() -> None:
    text = format_table(("k", "v"), [("a\tb", "x\ny")])
    assert text == "# k    v\na\\tb   x\\ny\n"


def test_remembered_widths_only_grow() -> None:
    w = TabWriter(remember=True)
    first = w.format([header_cells(("IP", "NetworkInterface")), ("10.0.0.1", "eth0")])
    assert first == "# IP       NetworkInterface\n10.0.0.1   eth0\n"
    # A narrower row keeps the earlier width; a wider one widens the column from now on.
    assert w.format([("10.0.0.2", "eth0")]) == "10.0.0.2   eth0\n"
    assert w.format([("- 10.0.0.1", "eth0")]) == "- 10.0.0.1   eth0\n"
    assert w.format([("10.0.0.3", "eth0")]) == "10.0.0.3     eth0\n"


def test_without_remember_each_call_starts_afresh() -> None:
    w = TabWriter()
    w.format([("a-long-cell", "x")])
    assert w.format([("a", "x")]) == "a     x\n"
