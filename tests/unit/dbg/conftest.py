from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statedb import Database
from tests.unit.dbg.fixtures import golden_rows, open_db, write_rows


@pytest.fixture(params=["writer-alive", "writer-gone"])
def golden_state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A state dir with the golden rows, its writer still running or already closed."""
    db: Database | None = open_db(tmp_path)
    assert db is not None
    write_rows(db, golden_rows())
    if request.param == "writer-gone":
        db.close()
        db = None
    yield tmp_path
    if db is not None:
        db.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """The golden rows, writer gone."""
    with open_db(tmp_path) as db:
        write_rows(db, golden_rows())
    yield tmp_path
