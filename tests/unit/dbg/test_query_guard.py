"""``l2dbg statedb query`` reads and never writes: the authorizer refuses before anything runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.unit.dbg.fixtures import invoke

WRITES = [
    "INSERT INTO l2_announce (ip) VALUES ('192.0.2.1')",
    "UPDATE devices SET selected = 1",
    "DELETE FROM devices",
    "REPLACE INTO devices (ifindex) VALUES (3)",
    "CREATE TABLE t (x)",
    "CREATE TEMP TABLE t (x)",
    "CREATE VIEW v AS SELECT 1",
    "CREATE INDEX i ON devices (mtu)",
    "CREATE TRIGGER tr AFTER INSERT ON devices BEGIN SELECT 1; END",
    "DROP TABLE devices",
    "DROP INDEX devices_by_name",
    "ALTER TABLE devices ADD COLUMN x",
    "ALTER TABLE devices RENAME TO d",
    "ATTACH DATABASE 'other.db' AS other",
    "DETACH DATABASE main",
    "PRAGMA query_only = 0",
    "PRAGMA user_version = 7",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA writable_schema = 1",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
    "BEGIN",
    "SAVEPOINT s",
    "WITH x AS (SELECT 1) DELETE FROM devices",
]


def _digest(state_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(state_dir.iterdir())}


@pytest.mark.parametrize("sql", WRITES)
def test_writes_are_refused_in_one_line(state_dir: Path, sql: str) -> None:
    before = _digest(state_dir)
    out = invoke(["statedb", "query", sql, "--state-dir", str(state_dir)])
    assert out.code == 1 and out.stdout == ""
    assert out.stderr.startswith("l2dbg: query ") and out.stderr.count("\n") == 1, out.stderr
    assert _digest(state_dir) == before
    assert not (state_dir / "other.db").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n FROM devices",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3) SELECT x FROM c",
        "SELECT name FROM _statedb_tables ORDER BY name",
        "SELECT json_extract(origins, '$[0].name') AS svc FROM l2_announce ORDER BY svc",
        "PRAGMA user_version",
        "PRAGMA index_list(devices)",
        "SELECT * FROM pragma_table_info('devices')",
        "EXPLAIN QUERY PLAN SELECT * FROM devices WHERE name = 'lo'",
    ],
)
def test_reads_are_allowed(state_dir: Path, sql: str) -> None:
    out = invoke(["statedb", "query", sql, "--state-dir", str(state_dir)])
    assert (out.code, out.stderr) == (0, ""), out.stderr
    assert out.stdout.startswith("# ")


def test_refusal_names_what_would_have_been_written(state_dir: Path) -> None:
    out = invoke(["statedb", "query", "DROP TABLE devices", "--state-dir", str(state_dir)])
    assert "query refused: DROP TABLE devices would change" in out.stderr
    out = invoke(["statedb", "query", "PRAGMA query_only = 0", "--state-dir", str(state_dir)])
    assert "PRAGMA query_only = 0" in out.stderr


def test_one_statement_at_a_time(state_dir: Path) -> None:
    out = invoke(
        ["statedb", "query", "SELECT 1; DELETE FROM devices", "--state-dir", str(state_dir)]
    )
    assert out.code == 1 and out.stderr.startswith("l2dbg: query ")
    assert invoke(
        ["statedb", "query", "SELECT count(*) FROM devices", "--state-dir", str(state_dir)]
    ).stdout.endswith("3\n")


def test_empty_query_is_an_error(state_dir: Path) -> None:
    out = invoke(["statedb", "query", "  ", "--state-dir", str(state_dir)])
    assert (out.code, out.stderr) == (1, "l2dbg: query failed: the query is empty\n")
