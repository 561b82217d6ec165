"""l2lab's command line: `exec` loads nothing but the lab's state before handing over to
nsenter (checked through sys.modules in a fresh interpreter, not by timing it), plain help, and
shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lab.cli import command

REPO = Path(__file__).resolve().parents[3]

# Run l2lab's main() with os.execvpe replaced: print what would run, then the loaded modules.
_EXEC = (
    "import json, os, sys\n"
    "def execvpe(path, args, env):\n"
    "    print(json.dumps(args))\n"
    "    print(json.dumps(sorted(sys.modules)))\n"
    "    sys.exit(0)\n"
    "os.execvpe = execvpe\n"
    "from lab.cli import main\n"
    "main(sys.argv[1:])\n"
)


def _l2lab(args: list[str], run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "L2LAB_RUN_DIR": str(run_dir)}
    return subprocess.run(
        [sys.executable, "-c", _EXEC, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def _fake_lab(run_dir: Path, name: str) -> None:
    (run_dir / name).mkdir(parents=True)
    (run_dir / name / "state.json").write_text(json.dumps({"name": name, "phase": "up"}))


def test_exec_enters_the_member_and_loads_nothing_heavy(tmp_path: Path) -> None:
    _fake_lab(tmp_path, "t1")
    proc = _l2lab(["--name", "t1", "exec", "client", "--", "true", "-x"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv_line, modules_line = proc.stdout.splitlines()
    assert json.loads(argv_line) == ["nsenter", "--net=/run/netns/t1-client", "true", "-x"]
    modules = set(json.loads(modules_line))
    top = {m.split(".")[0] for m in modules}
    heavy = {"agent", "kubernetes", "pyroute2", "bcc", "cryptography", "yaml", "pydantic", "rich"}
    assert not top & heavy, sorted(top & heavy)
    assert not {"lab.lab", "lab.controlplane", "lab.commands", "common.tables"} & modules


def test_exec_without_a_lab_is_one_line(tmp_path: Path) -> None:
    proc = _l2lab(["--name", "nolab", "exec", "node1", "--", "true"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr == "l2lab: no lab named 'nolab' is up (start one with `l2lab up`)\n"


def test_exec_in_an_unknown_node_is_one_line(tmp_path: Path) -> None:
    _fake_lab(tmp_path, "t2")
    proc = _l2lab(["--name", "t2", "exec", "node9", "--", "true"], tmp_path)
    assert (proc.returncode, proc.stderr) == (
        1,
        "l2lab: no node 'node9' in lab 't2' (nodes: none)\n",
    )


def test_help_and_completion_load_nothing_heavy() -> None:
    """Listing the commands (``--help``, the shell's TAB) imports lab/commands.py, not what
    the commands run."""
    code = (
        "import sys\n"
        "from lab.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    for env in (
        {},
        {"_L2LAB_COMPLETE": "complete_bash", "COMP_WORDS": "l2lab s", "COMP_CWORD": "1"},
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=REPO,
            timeout=60,
        )
        modules = set(proc.stdout.splitlines()[-1].split())  # the last line: sys.modules
        assert "lab.commands" in modules, proc.stderr
        top = {m.split(".")[0] for m in modules}
        assert not top & {"agent", "kubernetes", "cryptography", "yaml", "pydantic", "rich"}
        assert not {"lab.lab", "lab.controlplane"} & modules


def test_help_is_plain_and_lists_every_command() -> None:
    exe = Path(sys.executable).with_name("l2lab")
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "<bool>" not in proc.stdout and "╭" not in proc.stdout
    listed = {line.split()[0] for line in proc.stdout.split("Commands:")[1].splitlines() if line}
    assert {"up", "status", "exec", "down", "completion"} <= listed
    assert set(command().list_commands(None)) == listed


def test_completion_offers_commands_and_prints_the_script() -> None:
    exe = Path(sys.executable).with_name("l2lab")
    env = {
        **os.environ,
        "_L2LAB_COMPLETE": "complete_bash",
        "COMP_WORDS": "l2lab ex",
        "COMP_CWORD": "1",
    }
    proc = subprocess.run([str(exe)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["exec"], proc.stderr
    out = subprocess.run(
        [str(exe), "completion", "bash"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "complete -o default -F _l2lab_completion l2lab" in out
