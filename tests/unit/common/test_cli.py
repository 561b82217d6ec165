"""common.cli: typer's parameters converted without pydantic must behave exactly as typer's own
conversion (values, defaults, errors), and pydantic must stay unloaded."""

from __future__ import annotations

import enum
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from common.cli import command_of

REPO = Path(__file__).resolve().parents[3]


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "green"


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, rich_markup_mode=None)

    @app.command()
    def show(
        name: Annotated[str, typer.Argument()],
        count: Annotated[int, typer.Option()] = 1,
        ratio: Annotated[float | None, typer.Option()] = None,
        colour: Annotated[Colour, typer.Option("--colour", "-c")] = Colour.RED,
        mode: Annotated[Literal["fast", "slow"], typer.Option()] = "fast",
        where: Annotated[Path | None, typer.Option()] = None,
        flag: Annotated[bool, typer.Option("--flag/--no-flag")] = False,
        switch: Annotated[bool, typer.Option(envvar="T_SWITCH")] = False,
        word: Annotated[str | None, typer.Option(parser=lambda v: v.upper())] = None,
        strict: Annotated[int | None, typer.Option(parser=int)] = None,
    ) -> None:
        values = [name, count, ratio, colour, mode, where, flag, switch, word, strict]
        typer.echo(repr([(type(v).__name__, v) for v in values]))

    return app


def _run(cmd: Any, args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation(env=env or {}) as (out, err, _):
        try:
            cmd.main(args=args, prog_name="t")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        return code, out.getvalue().decode(), err.getvalue().decode()


CASES = [
    ["x"],
    ["x", "--count", "3", "--ratio", "2.5", "-c", "green", "--mode", "slow", "--where", "/a/b"],
    ["x", "--flag", "--word", "abc", "--strict", "7", "--colour=green"],
    ["x", "--count", "three"],
    ["x", "--count", " 4 "],
    ["x", "--count", "3.0"],
    ["x", "--count", "-0.00"],
    ["x", "--count", "3.5"],
    ["x", "--count", "3."],
    ["x", "--count", "1_000"],
    ["x", "--ratio", "1e3"],
    ["x", "--ratio", "fast"],
    ["x", "--colour", "blue"],
    ["x", "-c", "GREEN"],
    ["x", "--mode", "medium"],
    ["x", "--strict", "seven"],
    ["x", "--no-flag"],
    [],
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a) or "none" for a in CASES])
def test_lean_conversion_is_typers(args: list[str]) -> None:
    app = _app()
    assert _run(command_of(app), args) == _run(typer.main.get_command(app), args)


@pytest.mark.parametrize("value", ["1", "true", "yes", "0", "off", "maybe"])
def test_lean_bool_from_the_environment_is_typers(value: str) -> None:
    app = _app()
    env = {"T_SWITCH": value}
    assert _run(command_of(app), ["x"], env) == _run(typer.main.get_command(app), ["x"], env)


def test_lean_commands_never_import_pydantic() -> None:
    code = (
        "import sys\n"
        "from tests.unit.common.test_cli import CASES, _app, _run\n"
        "from common.cli import command_of\n"
        "for args in CASES:\n"
        "    _run(command_of(_app()), args)\n"
        "_run(command_of(_app()), ['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'rich')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.stdout.strip() == "[]", proc.stderr


def test_agent_flags_need_no_pydantic() -> None:
    code = (
        "import sys\n"
        "from agent.main import main\n"
        "try:\n"
        "    main(['--health-probe', '--state-dir', '/nonexistent', '--k8s-client-qps', '5'])\n"
        "except SystemExit as e:\n"
        "    print(e.code)\n"
        "print('pydantic' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.stdout.split() == ["2", "False"], proc.stderr
