"""`l2lab`: the embedded lab's command line.

``l2lab up`` builds a LAN of network namespaces with nodes running the real agent and datapath, a
client and a real Kubernetes control plane (lab/lab.py, lab/controlplane.py; docs/lab.md); the
other commands look into it, disturb it and take it down.

Every lab command takes the lab's name from ``--name`` or ``L2LAB_NAME`` (default ``l2lab``), so
tests can run their own lab beside a user's.

``exec`` and ``completion`` are defined here and need nothing but the lab's state file, so
``l2lab exec node1 -- cmd`` costs little more than ``nsenter``; the other commands are in
lab/commands.py, imported (with the control plane's and the agent's modules) only when one of
them runs or ``--help`` lists them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from common.cli import LazyGroup, command_of, completion_command, run
from lab.inventory import DEFAULT_NAME, check_name

PROG = "l2lab"
_EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}

_selected = {"name": DEFAULT_NAME}


class Commands(LazyGroup):
    """The commands of lab/commands.py, built all at once when the first of them is needed."""

    _rest: Any = None

    def rest(self) -> Any:
        if self._rest is None:
            from lab import commands

            rest = typer.Typer(add_completion=False)
            commands.register(rest, _selected)
            self._rest = command_of(rest)
        return self._rest

    def lazy_names(self) -> list[str]:
        return [n for n in self.rest().list_commands(None) if n not in self.commands]

    def load_command(self, name: str) -> Any:
        return self.rest().commands.get(name)


app = typer.Typer(
    name=PROG,
    cls=Commands,
    help="The l2announcer lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    name: Annotated[
        str,
        typer.Option(
            "--name", envvar="L2LAB_NAME", help="The lab's name (prefix of its namespaces)."
        ),
    ] = DEFAULT_NAME,
) -> None:
    """The l2announcer lab."""
    try:
        _selected["name"] = check_name(name)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--name") from None


@app.command("exec", context_settings=_EXTRA)
def exec_(
    ctx: typer.Context,
    member: Annotated[str, typer.Argument(help="node1..nodeN or client")],
) -> None:
    """Run a command in a node (with its l2dbg state and BPF pins) or the client."""
    from lab import access

    with access.errors():
        state = access.require(_selected["name"])
        command = ctx.args or [os.environ.get("SHELL", "/bin/sh")]
        args, env = access.exec_args(state, member, command)
        sys.stdout.flush()
        os.execvpe(args[0], args, env)


app.command("completion", epilog=f"Example: source <({PROG} completion bash)")(
    completion_command(PROG)
)


def command() -> Any:
    """The click command of ``l2lab``, as ``main()`` runs it."""
    return command_of(app)


def main(argv: list[str] | None = None) -> None:
    run(command(), PROG, sys.argv[1:] if argv is None else argv)
