"""The root of ``l2dbg``: its one option and its commands, each in its own module and imported
only when that command runs (or ``--help`` lists it), so ``l2dbg statedb devices`` never loads
the BPF map code and ``l2dbg config`` never builds a command per table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from common.cli import LazyGroup, command_of, completion_app
from dbg.options import DEFAULT_STATE_DIR, STATE_DIR_ENV

PROG = "l2dbg"


class Commands(LazyGroup):
    lazy = {
        "config": "dbg.config_cmd:app",
        "status": "dbg.status_cmd:app",
        "statedb": "dbg.statedb_cmd:app",
        "bpf": "dbg.bpf_cmd:app",
        "completion": "dbg.cli:completion",
    }
    # The commands' help, so that `l2dbg --help` imports none of the modules above (a test
    # checks each against the command's own).
    helps = {
        "config": "The agent's configuration, as `cilium-dbg config --all` prints it.",
        "status": "One screen: modules' health, leases held and followed, announced IPs,"
        " prerequisites.",
        "statedb": "Inspect the agent's state database (read-only).",
        "bpf": "Inspect the BPF maps of the datapath (read-only).",
        "completion": "Print the shell code that completes commands, options and tables on TAB.",
    }

    def lazy_help(self, name: str) -> tuple[str | None, str | None] | None:
        return (self.helps[name], None) if name in self.helps else None


app = typer.Typer(
    name=PROG,
    cls=Commands,
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


def completion() -> typer.Typer:
    return completion_app(PROG)


def command() -> Any:
    """The click command of ``l2dbg``, as ``main()`` runs it (tests run it the same way)."""
    return command_of(app)
