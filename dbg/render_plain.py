"""The reference's table layout, byte for byte, without any dependency (the piped path).

cilium-dbg writes its tables through a tabwriter (minwidth 6, padding 3, padchar ' ',
RememberWidths): every cell but the last on a line is left-aligned and padded to its column's
width, ``max(len(cell) + 3, 6)`` over all lines; the last cell is written as is. The header is
``"# "`` + the header cells. With ``remember=True`` column widths only grow from one ``format``
call to the next, so rows printed later by ``--watch`` stay aligned with earlier ones.

Two deliberate details: a tab or newline inside a cell is shown as ``\\t``/``\\n`` (the
reference's writer would start a new cell or line), and a line never ends in spaces, also when
its last cell is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_WIDTH = 6
PADDING = 3
HEADER_PREFIX = "# "


def header_cells(header: Sequence[str]) -> list[str]:
    """The header as a line of cells: ``"# "`` joined to the first one."""
    cells = list(header)
    if cells:
        cells[0] = HEADER_PREFIX + cells[0]
    else:
        cells = [HEADER_PREFIX.rstrip()]
    return cells


def clean_cell(cell: str) -> str:
    return cell.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class TabWriter:
    """Aligns lines of cells; keeps its column widths between calls when ``remember`` is set."""

    def __init__(self, *, remember: bool = False) -> None:
        self.remember = remember
        self.widths: list[int] = []

    def column_widths(self, lines: Sequence[Sequence[str]]) -> list[int]:
        """The width of every aligned column (all cells but the last of each line)."""
        widths = list(self.widths) if self.remember else []
        for line in lines:
            for i, cell in enumerate(line[:-1]):
                w = max(len(clean_cell(cell)) + PADDING, MIN_WIDTH)
                if i == len(widths):
                    widths.append(w)
                elif w > widths[i]:
                    widths[i] = w
        if self.remember:
            self.widths = widths
        return widths

    def format(self, lines: Sequence[Sequence[str]]) -> str:
        """The aligned text of ``lines``, one ``\\n``-terminated line each."""
        widths = self.column_widths(lines)
        out: list[str] = []
        for line in lines:
            cells = [clean_cell(c) for c in line]
            text = "".join(c.ljust(widths[i]) for i, c in enumerate(cells[:-1]))
            text += cells[-1] if cells else ""
            out.append(text.rstrip(" ") + "\n")
        return "".join(out)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """One table in the reference layout: the ``# `` header, then the rows."""
    return TabWriter().format([header_cells(header), *rows])
