"""``l2dbg config --all``: the agent's configuration in the reference's layout.

The reference prints ``#### Read-only configurations ####`` then ``%-34s: %v`` lines sorted by
name, then ``##### Read-write configurations #####``. The values come from the agent's ``config``
table; durations print as ``15s``, not as the reference's float nanoseconds (``1.5e+10``), which
nobody reads at a glance.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from common.tables.config import CONFIG, ConfigEntry
from dbg import statedb_ops
from dbg.errors import DbgError, report
from dbg.options import state_dir_of
from dbg.output import DataOutput, write_data

READ_ONLY = "#### Read-only configurations ####"
READ_WRITE = "##### Read-write configurations #####"


def layout(entries: list[ConfigEntry]) -> str:
    lines = [READ_ONLY]
    for e in sorted(entries, key=lambda e: e.name.encode()):  # Go's sort.Strings: byte order
        lines.append(f"{e.name:<34}: {e.value}")
    lines.append(READ_WRITE)
    return "\n".join(lines) + "\n"


app = typer.Typer(rich_markup_mode=None, add_completion=False)


@app.command("config")
def config(
    ctx: typer.Context,
    all_: Annotated[
        bool,
        typer.Option("--all", help="Every setting (the only view; accepted as in cilium-dbg)."),
    ] = False,
    output: Annotated[
        DataOutput | None,
        typer.Option(
            "--output", "-o", help="json or yaml: the settings as a map.", show_default=False
        ),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Directory holding statedb.sqlite.")
    ] = None,
) -> None:
    """The agent's configuration, as `cilium-dbg config --all` prints it."""
    try:
        directory = state_dir_of(ctx)
        with statedb_ops.open_db(directory) as ro:
            entries = statedb_ops.read_rows(ro, CONFIG)
    except DbgError as e:
        report(e)
        raise typer.Exit(1) from None
    if output is not None:
        write_data(
            {e.name: e.value for e in sorted(entries, key=lambda e: e.name)}, output, sys.stdout
        )
        return
    sys.stdout.write(layout(entries))
