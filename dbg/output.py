"""Output formats and the shape every table takes before it is rendered.

A ``Grid`` is a header plus ``Line``s of text cells, each cell with an optional rich style name
(plain strings, so this module does not need rich). ``write_grid`` prints it in the reference's
plain layout, or through ``dbg.render_rich`` when ``-o table`` writes to a terminal.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from dbg.render_plain import TabWriter, header_cells

DELETED_PREFIX = "- "


class Output(enum.StrEnum):
    TABLE = "table"
    PLAIN = "plain"
    JSON = "json"
    YAML = "yaml"


class DataOutput(enum.StrEnum):
    """Formats of commands whose output is not a table (``dump``)."""

    JSON = "json"
    YAML = "yaml"


@dataclass(frozen=True, slots=True)
class Line:
    cells: tuple[str, ...]
    styles: tuple[str, ...] = ()  # rich style per cell, "" for none; empty tuple = no styles
    deleted: bool = False

    def style(self, i: int) -> str:
        return self.styles[i] if i < len(self.styles) else ""

    def plain_cells(self) -> list[str]:
        """The cells as the plain layout prints them: a deleted row's first cell gets ``- ``."""
        cells = list(self.cells)
        if self.deleted and cells:
            cells[0] = DELETED_PREFIX + cells[0]
        return cells


@dataclass(frozen=True, slots=True)
class Grid:
    header: tuple[str, ...]
    lines: Sequence[Line]


def wants_rich(output: Output, stream: TextIO) -> bool:
    """``-o table`` is rich on a terminal and the plain layout when piped or captured."""
    if output is not Output.TABLE:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def plain_text(grid: Grid, writer: TabWriter | None = None, *, header: bool = True) -> str:
    lines = [header_cells(grid.header)] if header else []
    lines += [line.plain_cells() for line in grid.lines]
    return (writer or TabWriter()).format(lines)


def write_grid(grid: Grid, output: Output, stream: TextIO) -> None:
    if wants_rich(output, stream):
        from dbg import render_rich

        render_rich.print_table(grid, stream)
    else:
        stream.write(plain_text(grid))
    stream.flush()


def to_json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def to_yaml_text(data: Any) -> str:
    import yaml  # only on the yaml path: it costs start-up time

    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return text


def write_data(data: Any, output: Output | DataOutput, stream: TextIO) -> None:
    """``-o json`` (indent 2) or ``-o yaml`` of plain data."""
    stream.write(to_yaml_text(data) if output == "yaml" else to_json_text(data))
    stream.flush()
