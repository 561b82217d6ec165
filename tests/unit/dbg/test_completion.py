"""Shell completion of l2dbg: the script `l2dbg completion SHELL` prints, and the answers l2dbg
gives the shell through typer's protocol (the variable _L2DBG_COMPLETE)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.tables import CATALOGUE
from tests.unit.dbg.fixtures import REPO, invoke, l2dbg_executable


def _complete(words: str) -> list[str]:
    """What l2dbg offers bash for the last word of ``words``."""
    env = {
        **os.environ,
        "_L2DBG_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    proc = subprocess.run(
        [str(l2dbg_executable())], env=env, capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_commands_tables_options_and_values_complete() -> None:
    assert _complete("l2dbg ") == ["config", "status", "statedb", "bpf", "completion"]
    assert set(_complete("l2dbg statedb l2")) == {t for t in CATALOGUE if t.startswith("l2")}
    assert set(_complete("l2dbg statedb ")) >= {*CATALOGUE, "dump", "query"}
    assert "--watch" in _complete("l2dbg statedb devices -")
    assert "--count" not in _complete("l2dbg statedb devices -")  # hidden
    assert _complete("l2dbg statedb devices -o ") == ["table", "plain", "json", "yaml"]


@pytest.mark.parametrize(
    ("shell", "line"),
    [
        ("bash", "complete -o default -F _l2dbg_completion l2dbg"),
        ("zsh", "compdef _l2dbg_completion l2dbg"),
        ("fish", "complete --command l2dbg"),
        ("powershell", "Register-ArgumentCompleter -Native -CommandName l2dbg"),
    ],
)
def test_completion_prints_the_script_of_each_shell(shell: str, line: str) -> None:
    out = invoke(["completion", shell])
    assert out.code == 0 and line in out.stdout and "_L2DBG_COMPLETE" in out.stdout


def test_unknown_shell_is_a_usage_error() -> None:
    out = invoke(["completion", "tcsh"])
    assert out.code == 2 and "'tcsh' is not one of" in out.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_through_the_printed_script(tmp_path: Path) -> None:
    script = (
        "source <(l2dbg completion bash)\n"
        "COMP_WORDS=(l2dbg statedb dev); COMP_CWORD=2\n"
        "_l2dbg_completion l2dbg\n"
        'echo "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert proc.stdout.split() == ["devices"], proc.stderr
