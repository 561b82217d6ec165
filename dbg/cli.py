"""The typer application: ``l2dbg`` and its command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dbg import bpf_cmd, config_cmd, statedb_cmd, status_cmd
from dbg.statedb_ops import DEFAULT_STATE_DIR, STATE_DIR_ENV

app = typer.Typer(
    name="l2dbg",
    help="Debug CLI of l2announcer: reads the node agent's state read-only.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            envvar=STATE_DIR_ENV,
            help="Directory holding the agent's statedb.sqlite.",
        ),
    ] = Path(DEFAULT_STATE_DIR),
) -> None:
    """Debug CLI of l2announcer: reads the node agent's state read-only."""


app.add_typer(statedb_cmd.app, name="statedb")
app.add_typer(bpf_cmd.app, name="bpf")
app.command("config")(config_cmd.config)
app.command("status")(status_cmd.status)
