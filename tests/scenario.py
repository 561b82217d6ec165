"""Scenario scripts: the steps of a test and what they must produce, in one text file, so a
behaviour change reads as a diff of a script. The format is txtar-like::

    # a comment
    some-command arg1 key=value   # a trailing comment
    expect step1                  # compare what happened with the file "step1" below
    expect-something inline value # or with the rest of the line
    -- step1 --
    the expected text of step1

Each suite subclasses ``ScenarioRunner`` with its commands: a line ``some-command args`` calls
``cmd_some_command(lineno, "args")``. Expectations go through ``compare`` (a file of the script)
or ``compare_inline`` (the rest of the command's line).

``SCENARIO_UPDATE=1`` rewrites every expectation with what the run produced instead of failing,
so a deliberate change is one command and a reviewable diff of the scripts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

UPDATE_ENV = "SCENARIO_UPDATE"
_FILE_MARKER = re.compile(r"^-- (.+) --$")


@dataclass
class Script:
    commands: list[str]
    files: dict[str, str]  # in file order

    @classmethod
    def parse(cls, text: str) -> Script:
        commands: list[str] = []
        files: dict[str, str] = {}
        current: str | None = None
        for line in text.splitlines(keepends=True):
            m = _FILE_MARKER.match(line.rstrip("\n"))
            if m:
                current = m.group(1)
                files[current] = ""
            elif current is None:
                commands.append(line.rstrip("\n"))
            else:
                files[current] += line
        return cls(commands, files)

    def format(self) -> str:
        out = "".join(c + "\n" for c in self.commands)
        for name, body in self.files.items():
            out += f"-- {name} --\n{body}"
        return out


class ScriptError(AssertionError):
    pass


def _split_comment(raw: str) -> tuple[str, str]:
    """(the command, its trailing ``  # comment`` with the spaces before it, or "")."""
    code, sep, comment = raw.partition(" #")
    if not sep:
        return raw.rstrip(), ""
    stripped = code.rstrip()
    return stripped, code[len(stripped) :] + sep + comment


@dataclass
class ScenarioRunner:
    script: Script
    update: bool

    def run(self) -> None:
        try:
            for lineno, raw in enumerate(self.script.commands, 1):
                line = _split_comment(raw)[0].strip()
                if not line or line.startswith("#"):
                    continue
                name, _, rest = line.partition(" ")
                handler: Callable[[int, str], None] | None = getattr(
                    self, "cmd_" + name.replace("-", "_"), None
                )
                if handler is None:
                    raise ScriptError(f"line {lineno}: unknown command {name!r}")
                try:
                    handler(lineno, rest.strip())
                except ScriptError as e:
                    raise ScriptError(f"line {lineno}: {raw.strip()}\n{e}") from None
        finally:
            self.close()

    def close(self) -> None:
        """Release what the script started (called even when it fails)."""

    def compare(self, name: str, actual: str) -> None:
        """Check ``actual`` against the script's file ``name`` (update mode: replace it)."""
        if self.update:
            self.script.files[name] = actual
            return
        if name not in self.script.files:
            raise ScriptError(f"no file {name!r} in the script (run with {UPDATE_ENV}=1)")
        expected = self.script.files[name]
        if expected != actual:
            raise ScriptError(f"{name} differs\n--- expected\n{expected}--- actual\n{actual}")

    def compare_inline(self, lineno: int, actual: str) -> None:
        """Check ``actual`` against the rest of command line ``lineno`` after the command's name
        (update mode: rewrite that line, keeping its trailing comment)."""
        code, comment = _split_comment(self.script.commands[lineno - 1])
        name, _, expected = code.strip().partition(" ")
        if self.update:
            indent = code[: len(code) - len(code.lstrip())]
            self.script.commands[lineno - 1] = f"{indent}{name} {actual}".rstrip() + comment
        elif expected.strip() != actual:
            raise ScriptError(f"expected {expected.strip()!r}, got {actual!r}")


def update_requested(*also: str) -> bool:
    """Whether to rewrite expectations: ``SCENARIO_UPDATE=1``, or one of a suite's own names."""
    return any(os.environ.get(name) == "1" for name in (UPDATE_ENV, *also))


def run_script(
    path: Path, runner: Callable[[Script, bool], ScenarioRunner], *also_env: str
) -> None:
    """Run the script at ``path``; in update mode, write it back with what the run produced."""
    update = update_requested(*also_env)
    script = Script.parse(path.read_text())
    runner(script, update).run()
    if update:
        path.write_text(script.format())


def broken_copies(script: Script, inline: tuple[str, ...] = ()) -> Iterator[tuple[str, Script]]:
    """Copies of ``script`` with one expectation wrong each: every file, and every command line
    named in ``inline``. A script that still passes with one of them checks nothing there (or
    holds a file no command reads)."""
    for name in script.files:
        files = dict(script.files)
        files[name] += "something else\n"
        yield f"file {name}", replace(script, files=files)
    for i, raw in enumerate(script.commands):
        code, comment = _split_comment(raw)
        if code.strip().partition(" ")[0] in inline:
            commands = list(script.commands)
            commands[i] = f"{code} something-else{comment}"
            yield f"line {i + 1}", replace(script, commands=commands)
