"""The command line itself: -w/--watch and its optional interval, and what each command path
imports (checked in a fresh interpreter through sys.modules, not by timing it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.cli import listed_help
from dbg.cli import Commands, command
from dbg.errors import DbgError
from dbg.watch import watch_interval
from tests.unit.dbg.fixtures import REPO, invoke


def _parse(name: str, args: list[str]) -> dict[str, Any]:
    """The parameters typer parses for ``l2dbg statedb <name> args``."""
    group = command().get_command(None, "statedb")
    ctx = group.get_command(None, name).make_context(name, list(args))
    return dict(ctx.params)


@pytest.mark.parametrize(
    ("args", "watch", "output"),
    [
        ([], None, "table"),
        (["-w"], "1s", "table"),
        (["--watch"], "1s", "table"),
        (["-w", "100ms"], "100ms", "table"),
        (["--watch", "2s", "-o", "json"], "2s", "json"),
        (["-w1m"], "1m", "table"),
        (["-w=1m"], "1m", "table"),
        (["--watch=250ms"], "250ms", "table"),
        (["-w", "-o", "plain"], "1s", "plain"),
        (["-o", "plain", "-w"], "1s", "plain"),
        (["-w", "2"], "2", "table"),
        (["--watch=soon"], "soon", "table"),  # refused when the command runs, in one line
    ],
)
def test_watch_takes_an_optional_interval(args: list[str], watch: str | None, output: str) -> None:
    params = _parse("devices", args)
    assert (params["watch"], params["output"]) == (watch, output)


def test_a_word_after_watch_that_is_no_interval_stays_an_argument(state_dir: Path) -> None:
    out = invoke(["statedb", "devices", "-w", "soon", "--state-dir", str(state_dir)])
    assert out.code == 2 and "unexpected extra argument(s) (soon)" in out.stderr


def test_only_table_commands_take_watch() -> None:
    assert _parse("query", ["--", "-w"])["sql"] == "-w"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("100ms", 0.1),
        ("2s", 2.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("2", 2.0),
        ("500us", 0.0005),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert watch_interval(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "1x", "s", "0s", "-1s", "1s 2s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(DbgError):
        watch_interval(text)


def test_bad_option_values_are_typers_usage_errors(state_dir: Path) -> None:
    out = invoke(["statedb", "devices", "-o", "xml", "--state-dir", str(state_dir)])
    assert out.code == 2
    assert (
        "Invalid value for '--output' / '-o': Value error, 'xml' is not one of 'table', 'plain',"
        " 'json', 'yaml'." in out.stderr
    )
    out = invoke(["statedb", "devices", "-w", "--count", "x", "--state-dir", str(state_dir)])
    assert out.code == 2
    assert "Invalid value for '--count': Input should be a valid integer" in out.stderr


def _imported_modules(args: list[str]) -> set[str]:
    """The modules loaded by ``l2dbg args`` in a fresh interpreter, as the console script runs."""
    code = (
        "import sys\n"
        "from dbg.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\n' + '\\n'.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    return set(proc.stderr.split("\n"))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


# What costs start-up time and none of these commands uses.
HEAVY = {"rich", "pydantic", "pydantic_core", "kubernetes", "pyroute2", "bcc", "agent"}


@pytest.mark.parametrize(
    "args",
    [
        ["statedb", "l2-announce"],
        ["statedb", "l2-announce", "-o", "table"],
        ["statedb", "l2-announce", "-o", "plain"],
        ["statedb", "devices", "-o", "json"],
        ["statedb", "devices", "-w", "--count", "1"],
        ["statedb", "--help"],
        ["statedb", "devices", "--help"],
        ["statedb", "dump"],
        ["statedb", "query", "SELECT 1"],
        ["statedb", "nope"],
        ["statedb", "devices", "-o", "xml"],
        ["config", "--all"],
        ["config", "--all", "-o", "json"],
        ["config", "--help"],
    ],
)
def test_statedb_and_config_load_nothing_heavy(state_dir: Path, args: list[str]) -> None:
    mods = _imported_modules([*args, "--state-dir", str(state_dir)])
    assert "dbg.cli" in mods  # the command ran
    assert not (_top(mods) & HEAVY), sorted(_top(mods) & HEAVY)
    # Each command loads its own module only: no BPF map code, no status checks, no yaml.
    assert not {"bpf", "yaml"} & _top(mods)
    assert "dbg.bpf_cmd" not in mods and "dbg.status_cmd" not in mods


def test_a_table_command_builds_only_its_own_command(state_dir: Path) -> None:
    code = (
        "import sys\n"
        "from dbg.main import main\n"
        "from common.cli import LazyGroup\n"
        "built = []\n"
        "load = LazyGroup.get_command\n"
        "def get_command(self, ctx, name):\n"
        "    if name not in self.commands:\n"
        "        built.append(name)\n"
        "    return load(self, ctx, name)\n"
        "LazyGroup.get_command = get_command\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(' '.join(built))\n"
    )
    args = ["statedb", "devices", "--state-dir", str(state_dir)]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert proc.stderr == "statedb devices"


def test_help_loads_no_command_module(state_dir: Path) -> None:
    mods = _imported_modules(["--help"])
    assert "dbg.cli" in mods
    assert not _top(mods) & HEAVY, sorted(_top(mods) & HEAVY)
    assert not {m for m in mods if m.endswith("_cmd") or m.startswith("common.tables")}


@pytest.mark.parametrize("name", list(Commands.helps))
@pytest.mark.parametrize("limit", [20, 45, 60, 120])
def test_the_listed_help_is_the_commands_own(name: str, limit: int) -> None:
    root = command()
    listed = listed_help(root.lazy_help(name), limit)
    assert listed == root.get_command(None, name).get_short_help_str(limit)


def test_importtime_of_the_installed_entry_point_has_no_rich(state_dir: Path) -> None:
    exe = Path(sys.executable).with_name("l2dbg")
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            str(exe),
            "statedb",
            "devices",
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert imported and not {m for m in imported if m.split(".")[0] in ("rich", "pydantic")}


def test_dbg_never_imports_agent() -> None:
    for path in (REPO / "dbg").glob("*.py"):
        text = path.read_text()
        assert "import agent" not in text and "from agent" not in text, path


def test_only_render_rich_imports_rich() -> None:
    for path in (REPO / "dbg").glob("*.py"):
        if path.name == "render_rich.py":
            continue
        lines = path.read_text().splitlines()
        assert not [ln for ln in lines if ln.strip().startswith(("import rich", "from rich"))], path
