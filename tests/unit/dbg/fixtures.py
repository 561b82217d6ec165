"""The rows every l2dbg test and golden file is built from, and helpers to run the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from common.tables import CATALOGUE, DEVICES, L2_ANNOUNCE
from common.tables.devices import Device, DeviceAddress
from common.tables.l2_announce import L2AnnounceEntry, Origin
from dbg.main import main
from statedb import Database, Status, StatusKind, Table

REPO = Path(__file__).resolve().parents[3]
GOLDEN = REPO / "tests" / "golden" / "l2dbg"
UPDATE_ENV = "L2DBG_UPDATE_GOLDEN"

UP, BROADCAST, LOOPBACK, MULTICAST, RUNNING = 0x1, 0x2, 0x8, 0x1000, 0x40

# The two rows of the reference's ``cilium-dbg statedb devices`` example.
LO = Device(
    ifindex=1,
    name="lo",
    mtu=65536,
    raw_flags=UP | LOOPBACK | RUNNING,
    addresses=(DeviceAddress("127.0.0.1", scope=254), DeviceAddress("::1", scope=254)),
    not_selected_reason='excluded prefix "lo"',
)
ETH0 = Device(
    ifindex=50,
    name="eth0",
    type="veth",
    hw_addr="02:42:ac:13:00:03",
    raw_flags=UP | BROADCAST | MULTICAST | RUNNING,
    addresses=(
        DeviceAddress("172.19.0.3"),
        DeviceAddress("fc00:c111::3"),
        DeviceAddress("fe80::42:acff:fe13:3", scope=253),
    ),
    selected=True,
)
# A bridge port without addresses: an empty last cell, so no trailing spaces are checked too.
ETH1 = Device(
    ifindex=7,
    name="eth1",
    hw_addr="02:00:00:00:00:07",
    raw_flags=UP | BROADCAST | MULTICAST,
    master_index=9,
    not_selected_reason="bridged or bonded to ifindex 9",
)
DEVICE_ROWS = (ETH0, LO, ETH1)

WHEN = 1_764_000_000.25  # a fixed reconcile time, so the json and yaml goldens are stable
ANNOUNCE_ROWS = (
    L2AnnounceEntry(
        "198.51.100.10",
        "eth0",
        (Origin("default", "web"), Origin("shop", "cart")),
        Status(StatusKind.DONE, "", WHEN),
    ),
    L2AnnounceEntry("2001:db8::10", "eth0", (Origin("default", "web6"),), Status.pending()),
    L2AnnounceEntry(
        "198.51.100.9",
        "eth1",
        (Origin("", "cluster-wide"),),
        Status(StatusKind.ERROR, "map update: no space left on device", WHEN),
    ),
    L2AnnounceEntry("198.51.100.10", "bond0", (Origin("default", "web"),), Status.pending()),
)


def write_rows(db: Database, rows: Mapping[Table[Any], Sequence[Any]]) -> None:
    with db.write_txn(*rows) as txn:
        for table, items in rows.items():
            for r in items:
                txn.upsert(table, r)


def golden_rows() -> dict[Table[Any], Sequence[Any]]:
    return {DEVICES: DEVICE_ROWS, L2_ANNOUNCE: ANNOUNCE_ROWS}


def open_db(state_dir: Path, tables: Sequence[Table[Any]] | None = None) -> Database:
    return Database.open(state_dir / "statedb.sqlite", tables or list(CATALOGUE.values()))


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def invoke(args: Sequence[str], env: Mapping[str, str | None] | None = None) -> Outcome:
    """``l2dbg args`` in-process, exactly as the console script runs it (``dbg.main.main``), its
    output captured as from a pipe; ``env`` values of None unset the variable."""
    runner = CliRunner()
    code = 0
    with runner.isolation(env=dict(env or {})) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/golden/l2dbg/<name>, byte for byte; L2DBG_UPDATE_GOLDEN=1 rewrites."""
    path = GOLDEN / name
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        return
    assert path.exists(), f"no golden file {path}; run with {UPDATE_ENV}=1 to create it"
    expected = path.read_bytes().decode()
    assert text == expected, f"output differs from {path} (regenerate with {UPDATE_ENV}=1)"


def l2dbg_executable() -> Path:
    return Path(sys.executable).with_name("l2dbg")
