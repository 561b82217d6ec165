"""Terminal rendering with rich: the only module that imports rich.

Other modules import it inside the function that renders to a terminal, so ``l2dbg`` piped into
``grep`` or run with ``-o plain|json|yaml`` never pays for loading rich.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dbg.output import Grid, Line
from dbg.render_plain import TabWriter, header_cells

HEADER_STYLE = "bold cyan"
DELETED_STYLE = "red strike"


def _console(stream: TextIO) -> Console:
    return Console(file=stream, highlight=False, soft_wrap=True)


def _cell(line: Line, i: int, text: str) -> Text:
    style = DELETED_STYLE if line.deleted else line.style(i)
    return Text(text, style=style)


def print_table(grid: Grid, stream: TextIO) -> None:
    """One table: styled header, the same columns, colours from the lines' cell styles."""
    table = Table(box=box.SIMPLE_HEAD, header_style=HEADER_STYLE, pad_edge=False, show_edge=False)
    for name in grid.header:
        table.add_column(name, no_wrap=True)
    for line in grid.lines:
        table.add_row(*(_cell(line, i, c) for i, c in enumerate(line.cells)))
    console = _console(stream)
    longest = [
        max([len(h), *(len(line.cells[i]) for line in grid.lines)])
        for i, h in enumerate(grid.header)
    ]
    if sum(longest) + 3 * (len(longest) - 1) <= console.width:
        console.print(table)
        return
    # Too wide for the terminal: rich would squeeze or drop columns; print whole cells in
    # aligned columns instead and let the terminal wrap long lines.
    header = header_cells(grid.header)
    widths = TabWriter().column_widths([header, *(line.plain_cells() for line in grid.lines)])
    print_aligned([None, *grid.lines], header, widths, stream)


def print_aligned(
    lines: Sequence[Line | None], header: Sequence[str], widths: Sequence[int], stream: TextIO
) -> None:
    """Lines in fixed columns, ``None`` standing for the header (``--watch``: later batches must
    line up with earlier ones)."""
    console = _console(stream)
    for line in lines:
        if line is None:
            console.print(_aligned([Text(c, style=HEADER_STYLE) for c in header], widths))
            continue
        # The plain layout's cells (``- `` on a deleted row): the widths were measured on them.
        cells = line.plain_cells()
        console.print(_aligned([_cell(line, i, c) for i, c in enumerate(cells)], widths))


def _aligned(cells: Sequence[Text], widths: Sequence[int]) -> Text:
    out = Text()
    for i, cell in enumerate(cells):
        out.append_text(cell)
        if i < len(cells) - 1:
            out.append(" " * max(widths[i] - cell.cell_len, 0))
    return out
