"""docs/l2dbg.md cannot drift: every command has help and a section there, every option is
mentioned, and every ``console`` example runs with exactly the output shown."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbg.cli import command
from tests.unit.dbg.fixtures import REPO, invoke

DOC = REPO / "docs" / "l2dbg.md"


def _commands() -> Iterator[tuple[str, Any]]:
    """Every command, as l2dbg lists it (commands are built when first asked for)."""

    def walk(prefix: str, cmd: Any) -> Iterator[tuple[str, Any]]:
        yield prefix, cmd
        if not hasattr(cmd, "list_commands"):
            return
        for name in sorted(cmd.list_commands(None)):
            sub = cmd.get_command(None, name)
            if not sub.hidden:
                yield from walk(f"{prefix} {name}", sub)

    yield from walk("l2dbg", command())


COMMANDS = dict(_commands())


def test_the_command_tree_has_the_catalogue_tables() -> None:
    from common.tables import CATALOGUE

    for name in CATALOGUE:
        assert f"l2dbg statedb {name}" in COMMANDS


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_has_help_and_a_section(path: str) -> None:
    cmd = COMMANDS[path]
    assert (cmd.help or "").strip(), f"{path} has no help text"
    doc = DOC.read_text()
    assert f"## `{path}`" in doc, f"docs/l2dbg.md has no section for `{path}`"
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        names = [o for o in param.opts if o.startswith("-")] or [param.name.upper()]
        for name in names:
            assert f"`{name}" in doc, f"docs/l2dbg.md does not mention {name} of `{path}`"


def test_every_documented_command_exists() -> None:
    documented = re.findall(r"^#+ `(l2dbg[^`]*)`", DOC.read_text(), flags=re.M)
    assert documented
    for path in documented:
        assert path in COMMANDS, f"docs/l2dbg.md documents `{path}`, which does not exist"


def _examples() -> list[tuple[str, str]]:
    """(command line, expected output) of every ``console`` block."""
    examples: list[tuple[str, str]] = []
    for block in re.findall(r"^```console\n(.*?)^```", DOC.read_text(), flags=re.M | re.S):
        command: str | None = None
        output: list[str] = []
        for line in block.splitlines(keepends=True):
            if line.startswith("$ "):
                if command is not None:
                    examples.append((command, "".join(output)))
                command, output = line[2:].strip(), []
            else:
                output.append(line)
        if command is not None:
            examples.append((command, "".join(output)))
    return examples


EXAMPLES = _examples()


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_docs_example(state_dir: Path, command: str, expected: str) -> None:
    argv = shlex.split(command)
    assert argv[0] == "l2dbg"
    out = invoke(argv[1:], env={"L2ANNOUNCER_STATE_DIR": str(state_dir)})
    assert out.stdout + out.stderr == expected
