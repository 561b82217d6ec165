"""Getting into a running lab, with nothing else loaded: the lab's state by name, a member's
namespaces, and the environment its processes get. ``l2lab exec`` needs only this (and
``lab.inventory``, ``lab.netns``), so it starts in about the time of ``nsenter`` itself instead
of loading the control plane's and the agent's modules."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from lab import netns
from lab.inventory import LabState, NodeState
from lab.netns import LabError

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@contextmanager
def errors() -> Iterator[None]:
    """A LabError ends the command with one ``l2lab: ...`` line and exit code 1."""
    try:
        yield
    except LabError as e:
        typer.echo(f"l2lab: {e}", err=True)
        raise typer.Exit(1) from None


def require(name: str) -> LabState:
    state = LabState.load(name)
    if state is None:
        raise LabError(f"no lab named {name!r} is up (start one with `l2lab up`)")
    return state


def node_state(state: LabState, node: str) -> NodeState:
    if node not in state.node_states:
        known = ", ".join(state.node_states) or "none"
        raise LabError(f"no node {node!r} in lab {state.name!r} (nodes: {known})")
    return state.node_states[node]


def lab_env(cwd_on_path: bool = False) -> dict[str, str]:
    """The lab processes' environment: no L2ANNOUNCER_* leaking in, the venv's tools first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2ANNOUNCER_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    if cwd_on_path:
        env["PYTHONPATH"] = str(REPO)
    return env


def exec_args(state: LabState, member: str, command: list[str]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run `command` inside a lab member (node or client)."""
    env = lab_env()
    if member == "client":
        return [*netns.enter_args(None, state.client_netns), *command], env
    ns = node_state(state, member)
    if ns.sandbox is None or not ns.sandbox.alive():
        raise LabError(f"{member}'s sandbox is gone; the lab is broken: `l2lab down` and up again")
    return [*netns.enter_args(ns.sandbox.pid, ns.netns), *command], env
