"""``l2dbg bpf l2-responder list``: the pinned responder map as the datapath sees it.

Reads the map through bpf(2) (``bpf.maps``), never compiling anything, so it works when the
agent is wedged or gone. Interface names come from this network namespace (run it on the node).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from bpf.maps import (
    DEFAULT_BPF_ROOT,
    RESPONDER_MAP_NAME,
    RESPONDER_V6_MAP_NAME,
    ResponderMap,
    ResponderV6Map,
    pin_path,
)
from bpf.syscall import BpfError
from dbg.errors import DbgError, report
from dbg.output import Grid, Line, Output, write_data, write_grid

BPF_ROOT_ENV = "L2ANNOUNCER_BPF_ROOT"
HEADER = ("IP", "Interface", "Ifindex", "ResponsesSent")

app = typer.Typer(name="bpf", rich_markup_mode=None, no_args_is_help=True, add_completion=False,
                  help="Inspect the BPF maps of the datapath (read-only).")  # fmt: skip
responder = typer.Typer(name="l2-responder", rich_markup_mode=None, no_args_is_help=True,
                        help="The responder maps: cilium_l2_responder_v4 (ARP) and "
                        "l2announcer_responder_v6 (NDP).")  # fmt: skip
app.add_typer(responder, name="l2-responder")


def _ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return "?"


def rows(bpf_root: Path) -> list[tuple[str, str, int, int]]:
    path = Path(pin_path(str(bpf_root), RESPONDER_MAP_NAME))  # where the datapath pins it
    if not path.exists():
        raise DbgError(
            f"no responder map at {path} (is l2agent running with l2 announcements enabled? "
            f"use --bpf-root or {BPF_ROOT_ENV})"
        )
    path6 = Path(pin_path(str(bpf_root), RESPONDER_V6_MAP_NAME))  # absent before IPv6
    try:
        with ResponderMap.open(str(path), readonly=True) as m:
            entries = m.items()
        if path6.exists():
            with ResponderV6Map.open(str(path6), readonly=True) as m6:
                entries += m6.items()
    except (BpfError, OSError) as e:
        raise DbgError(f"cannot read {path}: {e}") from None
    entries.sort(key=lambda e: e.ifindex)  # stable: IPv4 then IPv6 on each interface
    return [(e.ip, _ifname(e.ifindex), e.ifindex, e.responses_sent) for e in entries]


@responder.command("list")
def list_entries(
    bpf_root: Annotated[
        Path | None,
        typer.Option(
            "--bpf-root",
            help=f"Directory of the pinned maps [default: ${BPF_ROOT_ENV}, else {DEFAULT_BPF_ROOT}].",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="table, plain, json or yaml.")
    ] = Output.TABLE,
) -> None:
    """The IPs the datapath answers ARP or Neighbour Solicitations for: IP, interface, ifindex
    and answers sent."""
    root = bpf_root or Path(os.environ.get(BPF_ROOT_ENV) or DEFAULT_BPF_ROOT)
    try:
        found = rows(root)
    except DbgError as e:
        report(e)
        raise typer.Exit(1) from None
    if output in (Output.JSON, Output.YAML):
        data = [
            {"IP": ip, "Interface": name, "Ifindex": idx, "ResponsesSent": sent}
            for ip, name, idx, sent in found
        ]
        write_data(data, output, sys.stdout)
        return
    grid = Grid(HEADER, [Line((ip, name, str(idx), str(sent))) for ip, name, idx, sent in found])
    write_grid(grid, output, sys.stdout)
