"""Every error is one line on stderr and exit code 1, never a traceback (golden messages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.tables import DEVICES
from tests.unit.dbg.fixtures import Outcome, assert_golden, invoke, open_db


def _golden_error(name: str, out: Outcome, state_dir: Path) -> None:
    assert out.code == 1
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("l2dbg: "), out.stderr
    assert "Traceback" not in out.stderr
    assert_golden(f"error-{name}.txt", out.stderr.replace(str(state_dir), "$STATE_DIR"))


def test_missing_database(tmp_path: Path) -> None:
    out = invoke(["statedb", "devices", "--state-dir", str(tmp_path)])
    _golden_error("missing-db", out, tmp_path)
    assert not list(tmp_path.iterdir()), "opening read-only must create nothing"


def test_missing_database_names_the_default_and_the_variable(tmp_path: Path) -> None:
    out = invoke(["statedb", "devices"], env={"L2ANNOUNCER_STATE_DIR": str(tmp_path / "x")})
    assert "L2ANNOUNCER_STATE_DIR" in out.stderr and "--state-dir" in out.stderr


def test_unknown_table(state_dir: Path) -> None:
    out = invoke(["statedb", "foo", "--state-dir", str(state_dir)])
    _golden_error("unknown-table", out, state_dir)


def test_table_not_in_the_file(tmp_path: Path) -> None:
    open_db(tmp_path, [DEVICES]).close()
    out = invoke(["statedb", "l2-announce", "--state-dir", str(tmp_path)])
    _golden_error("table-not-in-file", out, tmp_path)


def test_not_a_state_database(tmp_path: Path) -> None:
    (tmp_path / "statedb.sqlite").write_bytes(b"this is not sqlite" * 100)
    out = invoke(["statedb", "devices", "--state-dir", str(tmp_path)])
    _golden_error("not-a-state-db", out, tmp_path)


def test_bad_sql(state_dir: Path) -> None:
    out = invoke(["statedb", "query", "SELEC * FROM devices", "--state-dir", str(state_dir)])
    _golden_error("bad-sql", out, state_dir)


def test_unknown_sql_table(state_dir: Path) -> None:
    out = invoke(["statedb", "query", "SELECT * FROM bgp_peers", "--state-dir", str(state_dir)])
    assert (out.code, out.stderr) == (1, "l2dbg: query failed: no such table: bgp_peers\n")


def test_refused_write(state_dir: Path) -> None:
    out = invoke(["statedb", "query", "DELETE FROM l2_announce", "--state-dir", str(state_dir)])
    _golden_error("refused-write", out, state_dir)


def test_query_on_missing_database(tmp_path: Path) -> None:
    out = invoke(["statedb", "query", "SELECT 1", "--state-dir", str(tmp_path)])
    _golden_error("missing-db", out, tmp_path)


def test_bad_watch_interval(state_dir: Path) -> None:
    out = invoke(["statedb", "devices", "--watch=soon", "--state-dir", str(state_dir)])
    _golden_error("bad-watch-interval", out, state_dir)


@pytest.mark.parametrize(
    "args",
    [
        ["statedb", "dump"],
        ["statedb", "devices", "-w", "--count", "1"],
        ["statedb", "query", "SELECT 1"],
    ],
)
def test_every_command_reports_a_missing_database_in_one_line(
    tmp_path: Path, args: list[str]
) -> None:
    out = invoke([*args, "--state-dir", str(tmp_path)])
    _golden_error("missing-db", out, tmp_path)
