"""main(): the -w/--watch rewriting, the start-up fast path, and what l2dbg imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dbg.errors import DbgError
from dbg.fast import Request, parse
from dbg.main import preprocess
from dbg.output import Output
from dbg.watch import watch_interval
from tests.unit.dbg.fixtures import REPO, invoke, invoke_main

TABLES = frozenset({"devices", "l2-announce"})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["statedb", "devices", "-w"], ["statedb", "devices", "--watch=1s"]),
        (["statedb", "devices", "--watch"], ["statedb", "devices", "--watch=1s"]),
        (["statedb", "devices", "-w", "100ms"], ["statedb", "devices", "--watch=100ms"]),
        (
            ["statedb", "devices", "--watch", "2s", "-o", "json"],
            ["statedb", "devices", "--watch=2s", "-o", "json"],
        ),
        (["statedb", "devices", "-w1m"], ["statedb", "devices", "--watch=1m"]),
        (["statedb", "devices", "-w=1m"], ["statedb", "devices", "--watch=1m"]),
        (["statedb", "devices", "--watch=250ms"], ["statedb", "devices", "--watch=250ms"]),
        (
            ["statedb", "devices", "-w", "-o", "plain"],
            ["statedb", "devices", "--watch=1s", "-o", "plain"],
        ),
        (["statedb", "query", "--", "-w"], ["statedb", "query", "--", "-w"]),
    ],
)
def test_watch_takes_an_optional_interval(args: list[str], expected: list[str]) -> None:
    assert preprocess(args) == expected


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


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["statedb", "devices"], Request("devices", Output.TABLE, None)),
        (["statedb", "l2-announce", "-o", "plain"], Request("l2-announce", Output.PLAIN, None)),
        (["statedb", "l2-announce", "-ojson"], Request("l2-announce", Output.JSON, None)),
        (["statedb", "l2-announce", "--output=yaml"], Request("l2-announce", Output.YAML, None)),
        (["--state-dir", "/a", "statedb", "devices"], Request("devices", Output.TABLE, Path("/a"))),
        (
            ["--state-dir=/a", "statedb", "--state-dir", "/b", "devices", "--state-dir=/c"],
            Request("devices", Output.TABLE, Path("/c")),
        ),
        (["statedb", "--state-dir", "/b", "devices"], Request("devices", Output.TABLE, Path("/b"))),
    ],
)
def test_fast_path_accepts(args: list[str], expected: Request) -> None:
    assert parse(args, TABLES) == expected


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["statedb"],
        ["statedb", "foo"],
        ["statedb", "dump"],
        ["statedb", "query", "SELECT 1"],
        ["statedb", "devices", "--help"],
        ["statedb", "devices", "-h"],
        ["statedb", "devices", "--watch=1s"],
        ["statedb", "devices", "-o"],
        ["statedb", "devices", "-o", "xml"],
        ["statedb", "devices", "--state-dir"],
        ["statedb", "devices", "extra"],
        ["statedb", "-o", "json", "devices"],
        ["--help"],
        ["statedb", "devices", "--"],
    ],
)
def test_fast_path_leaves_everything_else_to_typer(args: list[str]) -> None:
    assert parse(args, TABLES) is None


def test_fast_path_and_typer_agree_on_bad_options(state_dir: Path) -> None:
    out = invoke_main(["statedb", "devices", "-o", "xml", "--state-dir", str(state_dir)])
    assert out.code == 2 and "xml" in out.stderr  # typer's usage error, reached via fallback
    assert invoke(["statedb", "devices", "-o", "xml", "--state-dir", str(state_dir)]).code == 2


def _imported_modules(args: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from dbg.main import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\n'.join(sorted(sys.modules)))\n"
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


@pytest.mark.parametrize("fmt", ["table", "plain", "json"])
def test_piped_table_loads_neither_rich_nor_typer(state_dir: Path, fmt: str) -> None:
    mods = _top(
        _imported_modules(["statedb", "l2-announce", "-o", fmt, "--state-dir", str(state_dir)])
    )
    assert "rich" not in mods
    assert "typer" not in mods and "pydantic" not in mods  # the fast path
    assert "yaml" not in mods


@pytest.mark.parametrize(
    "args",
    [
        ["statedb", "dump"],
        ["statedb", "query", "SELECT 1"],
        ["statedb", "devices", "-w", "--count", "1"],
        ["statedb", "devices", "--help"],
        ["--help"],
        ["statedb", "nope"],
    ],
)
def test_typer_paths_do_not_load_rich_either(state_dir: Path, args: list[str]) -> None:
    assert "rich" not in _top(_imported_modules([*args, "--state-dir", str(state_dir)]))


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
    assert imported and not {m for m in imported if m.split(".")[0] == "rich"}


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
