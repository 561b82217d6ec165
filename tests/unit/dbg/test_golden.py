"""Golden output of ``l2dbg statedb <table>`` in every format, with the writer alive, gone, or
killed mid-flight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from common.tables import DEVICES
from tests.unit.dbg.fixtures import (
    ETH0,
    LO,
    REPO,
    assert_golden,
    invoke,
    l2dbg_executable,
    open_db,
    write_rows,
)
from tests.unit.dbg.test_render_plain import DEVICES_EXAMPLE

FORMATS = {"plain": "txt", "json": "json", "yaml": "yaml"}
TABLES = ("devices", "l2-announce")


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_table_golden(golden_state: Path, table: str, fmt: str) -> None:
    args = ["statedb", table, "-o", fmt, "--state-dir", str(golden_state)]
    files = sorted(p.name for p in golden_state.iterdir())
    out = invoke(args)
    assert sorted(p.name for p in golden_state.iterdir()) == files, "l2dbg created files"
    assert (out.code, out.stderr) == (0, "")
    assert_golden(f"statedb-{table}.{FORMATS[fmt]}", out.stdout)


@pytest.mark.parametrize("table", TABLES)
def test_table_output_is_the_plain_layout_when_not_a_terminal(state_dir: Path, table: str) -> None:
    out = invoke(["statedb", table, "--state-dir", str(state_dir)])
    assert out.code == 0
    assert_golden(f"statedb-{table}.txt", out.stdout)


def test_devices_example_of_the_reference(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        write_rows(db, {DEVICES: (ETH0, LO)})
    out = invoke(["statedb", "devices", "--state-dir", str(tmp_path)])
    assert out.stdout == DEVICES_EXAMPLE


def test_empty_table_prints_only_its_header(tmp_path: Path) -> None:
    open_db(tmp_path).close()
    out = invoke(["statedb", "l2-announce", "--state-dir", str(tmp_path)])
    assert out == type(out)(0, "# IP   NetworkInterface\n", "")
    out = invoke(["statedb", "l2-announce", "-o", "json", "--state-dir", str(tmp_path)])
    assert out.stdout == "[]\n"


def test_dump_golden(golden_state: Path) -> None:
    out = invoke(["statedb", "dump", "--state-dir", str(golden_state)])
    assert (out.code, out.stderr) == (0, "")
    assert_golden("statedb-dump.json", out.stdout)
    yaml_out = invoke(["statedb", "dump", "-o", "yaml", "--state-dir", str(golden_state)])
    assert_golden("statedb-dump.yaml", yaml_out.stdout)


def test_query_golden(golden_state: Path) -> None:
    sql = (
        "SELECT ip, network_interface, status, status_error FROM l2_announce"
        " WHERE status != 'done' ORDER BY ip, network_interface"
    )
    for fmt, ext in (("plain", "txt"), ("json", "json"), ("yaml", "yaml")):
        out = invoke(["statedb", "query", sql, "-o", fmt, "--state-dir", str(golden_state)])
        assert (out.code, out.stderr) == (0, "")
        assert_golden(f"statedb-query.{ext}", out.stdout)


def test_query_shows_null_and_blobs(state_dir: Path) -> None:
    out = invoke(
        [
            "statedb",
            "query",
            "SELECT NULL AS n, x'00ff' AS b, 1.5 AS f",
            "--state-dir",
            str(state_dir),
        ]
    )
    assert out.stdout == "# n    b         f\nNULL   x'00ff'   1.5\n"
    out = invoke(
        [
            "statedb",
            "query",
            "SELECT NULL AS n, x'00ff' AS b",
            "-o",
            "json",
            "--state-dir",
            str(state_dir),
        ]
    )
    assert out.stdout == '[\n  {\n    "n": null,\n    "b": "00ff"\n  }\n]\n'


def test_query_may_read_introspection_pragmas(state_dir: Path) -> None:
    out = invoke(
        [
            "statedb",
            "query",
            "SELECT name FROM pragma_table_info('l2_announce')",
            "--state-dir",
            str(state_dir),
        ]
    )
    assert out.code == 0, out.stderr
    assert out.stdout.splitlines()[:3] == ["# name", "ip", "network_interface"]
    out = invoke(["statedb", "query", "PRAGMA table_info(devices)", "--state-dir", str(state_dir)])
    assert out.code == 0, out.stderr


def test_state_dir_from_environment_and_precedence(
    state_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("empty")
    env = {"L2ANNOUNCER_STATE_DIR": str(state_dir)}
    by_env = invoke(["statedb", "l2-announce", "-o", "json"], env=env)
    assert by_env.code == 0 and by_env.stdout.startswith("[\n")
    # Root, group and command options: the most specific wins, and any option beats the env.
    for args in (
        ["--state-dir", str(state_dir), "statedb", "l2-announce", "-o", "json"],
        ["statedb", "--state-dir", str(state_dir), "l2-announce", "-o", "json"],
        [
            "--state-dir",
            str(elsewhere),
            "statedb",
            "--state-dir",
            str(state_dir),
            "l2-announce",
            "-o",
            "json",
        ],
        [
            "statedb",
            "--state-dir",
            str(elsewhere),
            "l2-announce",
            "-o",
            "json",
            "--state-dir",
            str(state_dir),
        ],
        [
            f"--state-dir={elsewhere}",
            "statedb",
            "l2-announce",
            f"--state-dir={state_dir}",
            "-ojson",
        ],
    ):
        no_env = {"L2ANNOUNCER_STATE_DIR": str(elsewhere)}
        assert invoke(args, env=no_env) == by_env, args


def test_installed_entry_point_prints_the_golden_table(golden_state: Path) -> None:
    exe = l2dbg_executable()
    assert exe.exists(), f"{exe} is not installed (pip install -e .)"
    for table in TABLES:
        proc = subprocess.run(
            [str(exe), "statedb", table, "--state-dir", str(golden_state)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
        )
        assert (proc.returncode, proc.stderr) == (0, "")
        assert_golden(f"statedb-{table}.txt", proc.stdout)


def test_a_writer_killed_mid_flight_leaves_a_readable_database(tmp_path: Path) -> None:
    """The writer exits without closing: its -wal file stays, and l2dbg still reads it."""
    code = (
        "import os, sys\n"
        "from tests.unit.dbg.fixtures import golden_rows, open_db, write_rows\n"
        "from pathlib import Path\n"
        "db = open_db(Path(sys.argv[1]))\n"
        "write_rows(db, golden_rows())\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=REPO, timeout=30)
    assert (tmp_path / "statedb.sqlite-wal").exists()
    out = invoke(["statedb", "l2-announce", "--state-dir", str(tmp_path)])
    assert out.code == 0, out.stderr
    assert_golden("statedb-l2-announce.txt", out.stdout)
