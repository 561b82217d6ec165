"""What every l2dbg command shares: where the state database is, and how a failed operation
ends the command.

``--state-dir`` is accepted at every level (``l2dbg --state-dir D statedb devices``, ``l2dbg
statedb --state-dir D devices``, ``l2dbg statedb devices --state-dir D``); the most specific one
given wins, then $L2ANNOUNCER_STATE_DIR, then the default. typer parses it at each level and
``state_dir_of`` picks one: the only place it is resolved.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dbg.errors import DbgError, report

DEFAULT_STATE_DIR = "/run/l2announcer"
STATE_DIR_ENV = "L2ANNOUNCER_STATE_DIR"
STATE_DIR_HELP = (
    "Directory holding statedb.sqlite [default: $L2ANNOUNCER_STATE_DIR, else /run/l2announcer]."
)

StateDirOpt = Annotated[
    Path | None, typer.Option("--state-dir", help=STATE_DIR_HELP, show_default=False)
]


def resolve_state_dir(*given: str | os.PathLike[str] | None) -> Path:
    """The first ``--state-dir`` given, else $L2ANNOUNCER_STATE_DIR, else the default."""
    for g in given:
        if g is not None and str(g) != "":
            return Path(g)
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def state_dir_of(ctx: typer.Context) -> Path:
    """The most specific --state-dir: the command's, its group's, then the root's (which holds
    $L2ANNOUNCER_STATE_DIR or the default)."""
    given: list[Any] = []
    c: Any = ctx  # parents are typer's vendored click Contexts
    while c is not None:
        given.append(c.params.get("state_dir"))
        c = c.parent
    return resolve_state_dir(*given)


def run(fn: Callable[..., None], *args: Any) -> None:
    """Run an operation; a DbgError is one line on stderr and exit code 1."""
    try:
        fn(*args)
    except DbgError as e:
        report(e)
        raise typer.Exit(1) from None
    except BrokenPipeError:  # `l2dbg ... | head`: the reader went away
        raise typer.Exit(1) from None
