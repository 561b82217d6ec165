"""`l2lab`: the embedded lab's command line.

``l2lab up`` builds a LAN of network namespaces with nodes running the real agent and datapath, a
client and a real Kubernetes control plane (lab/lab.py, lab/controlplane.py; docs/lab.md); the
other commands look into it, disturb it and take it down.

Every lab command takes the lab's name from ``--name`` or ``L2LAB_NAME`` (default ``l2lab``), so
tests can run their own lab beside a user's.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lab.inventory import DEFAULT_NAME, check_name

_selected = {"name": DEFAULT_NAME}

app = typer.Typer(help="The l2announcer lab.", no_args_is_help=True, add_completion=False)


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


from lab import commands  # noqa: E402  (registers the lab commands on `app`)

commands.register(app, _selected)


def main() -> None:
    app()
