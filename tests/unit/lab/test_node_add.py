"""`l2lab node add`'s refusals, made before anything is created: no lab of that name, a lab that
is not up, a lab with all the addresses it has for nodes in use; each one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import inventory
from lab.inventory import MAX_NODES, LabState
from lab.lab import add_node
from lab.netns import LabError


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(inventory, "RUN_DIR", tmp_path)
    return tmp_path


def test_no_lab_is_refused(run_dir: Path) -> None:
    with pytest.raises(LabError, match=r"^no lab named 'nolab' is up"):
        add_node("nolab", say=lambda _: None)


def test_a_lab_that_is_not_up_is_refused_and_left_as_it_was(run_dir: Path) -> None:
    LabState(name="t1", nodes=3, phase="failed").save()
    with pytest.raises(LabError, match=r"^lab 't1' is failed, not up"):
        add_node("t1", say=lambda _: None)
    state = LabState.load("t1")
    assert state is not None and state.nodes == 3


def test_a_full_lab_is_refused_and_left_as_it_was(run_dir: Path) -> None:
    LabState(name="t2", nodes=MAX_NODES, phase="up").save()
    with pytest.raises(LabError) as refused:
        add_node("t2", say=lambda _: None)
    assert str(refused.value) == (
        f"lab 't2' has {MAX_NODES} nodes, all the addresses it has for nodes "
        f"({inventory.node_ip(1)} .. {inventory.node_ip(MAX_NODES)})"
    )
    state = LabState.load("t2")
    assert state is not None and state.nodes == MAX_NODES and not state.namespaces


def test_the_command_without_a_lab_is_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("l2lab")
    proc = subprocess.run(
        [str(exe), "--name", "nolab", "node", "add"],
        capture_output=True,
        text=True,
        env={**os.environ, "L2LAB_RUN_DIR": str(tmp_path)},
        timeout=60,
    )
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "l2lab: no lab named 'nolab' is up (start one with `l2lab up`)\n"
