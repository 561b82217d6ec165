"""docs/statedb.md documents the SQL schema operators query; it must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.tables import CATALOGUE
from statedb import Database

DOC = Path(__file__).resolve().parents[3] / "docs" / "statedb.md"


def _doc_schema(sql_name: str) -> str:
    text = DOC.read_text()
    m = re.search(rf'CREATE TABLE "{sql_name}" \((.*?)\n\);', text, re.S)
    assert m, f"docs/statedb.md has no CREATE TABLE for {sql_name}"
    return m.group(1)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_documented_columns_are_the_real_columns(name: str) -> None:
    table = CATALOGUE[name]
    with Database.open(None, [table]) as db, db.read_txn():
        real = [r[1] for r in db._conn.execute(f'PRAGMA table_info("{table.sql_name}")')]
    documented = re.findall(r'^\s+"(\w+)" ', _doc_schema(table.sql_name), re.M)
    assert documented == real
    assert f"`{name}`" in DOC.read_text()
