"""Runs every testdata/*.txtar scenario (see script.py for the format and the update mode)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scenario import Script, ScriptError
from tests.unit.statedb_reconciler.script import Runner, run_script

SCRIPTS = sorted((Path(__file__).parent / "testdata").glob("*.txtar"))


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario(path: Path) -> None:
    run_script(path)


def test_there_are_scenarios() -> None:
    assert len(SCRIPTS) >= 2


def test_a_wrong_expectation_fails_the_script() -> None:
    script = Script.parse(
        "start\nupsert a=1\nexpect-target s\nexpect-health OK, 1 object(s)\n-- s --\na=2\n"
    )
    with pytest.raises(ScriptError, match=r"s differs"):
        Runner(script, update=False).run()


def test_update_mode_rewrites_the_expectations() -> None:
    script = Script.parse("start\nupsert a=1\nexpect-target s\nexpect-health wrong\n-- s --\na=2\n")
    Runner(script, update=True).run()
    assert script.format() == (
        "start\nupsert a=1\nexpect-target s\nexpect-health OK, 1 object(s)\n-- s --\na=1\n"
    )


def test_an_unknown_command_is_an_error() -> None:
    with pytest.raises(ScriptError, match="unknown command 'frobnicate'"):
        Runner(Script.parse("frobnicate\n"), update=False).run()
