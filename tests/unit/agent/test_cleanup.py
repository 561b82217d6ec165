"""`l2agent cleanup`, the node part without the host: the state files (only ours, the directory
only when that empties it), the refusal while an agent lives, and what counts as an unused lease.
The tc filters and pins are removed by bpf.datapath.remove_leftovers, proven in the privileged
and lab tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent import cleanup
from agent.k8s.leases import _unused
from agent.main import main
from common.tables import CATALOGUE
from statedb import Database

OURS = ["statedb.sqlite", "statedb.sqlite-wal", "statedb.sqlite-shm", "statedb.sqlite.lock"]


def make_state(directory: Path, *extra: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in [*OURS, *extra]:
        (directory / name).write_text("x")


def test_state_files_and_then_the_emptied_directory_go_one_line_each(tmp_path: Path) -> None:
    state = tmp_path / "l2announcer"
    make_state(state)
    removed, left = cleanup.remove_state_files(str(state))
    assert removed == [f"state file {state / n}" for n in OURS] + [f"state directory {state}"]
    assert left == []
    assert not state.exists()
    # Idempotent: nothing the second time, and nothing said.
    assert cleanup.remove_state_files(str(state)) == ([], [])


def test_a_directory_holding_others_files_keeps_them_and_says_so(tmp_path: Path) -> None:
    make_state(tmp_path, "someone-elses.conf")
    removed, left = cleanup.remove_state_files(str(tmp_path))
    assert removed == [f"state file {tmp_path / n}" for n in OURS]
    assert left == [f"left {tmp_path}: it holds files that are not l2announcer's"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["someone-elses.conf"]


def test_a_shared_directory_without_our_files_is_not_touched_or_mentioned(tmp_path: Path) -> None:
    (tmp_path / "keep").write_text("x")
    assert cleanup.remove_state_files(str(tmp_path)) == ([], [])
    assert (tmp_path / "keep").exists()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


def test_cleanup_refuses_while_an_agent_writes_the_database_and_removes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Database.open(tmp_path / "statedb.sqlite", CATALOGUE.values())  # as a running agent
    try:
        before = sorted(p.name for p in tmp_path.iterdir())
        code, out, err = run(["cleanup", f"--state-dir={tmp_path}"], capsys)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    finally:
        db.close()
    assert (code, out) == (1, "")
    assert err == (
        f"l2agent cleanup: an agent is running on this node (pid {os.getpid()}, writing "
        f"{tmp_path / 'statedb.sqlite'}); stop it first\n"
    )


def test_cleanup_prints_one_line_per_thing_removed_then_nothing_to_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The host's tc filters and bpffs are not a unit test's to touch: the datapath part is
    # replaced by what it reports.
    filters = ["tc filter on eth0", "/sys/fs/bpf/tc/globals/cilium_l2_responder_v4"]
    monkeypatch.setattr("bpf.datapath.remove_leftovers", lambda root: filters.copy())
    state = tmp_path / "state"
    state.mkdir()
    Database.open(state / "statedb.sqlite", CATALOGUE.values()).close()  # an agent that stopped
    code, out, err = run(["cleanup", f"--state-dir={state}", "--bpf-root=/x"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:2] == [
        "removed tc filter on eth0",
        "removed BPF pin /sys/fs/bpf/tc/globals/cilium_l2_responder_v4",
    ]
    assert f"removed state file {state / 'statedb.sqlite'}" in lines
    assert lines[-1] == f"removed state directory {state}"
    assert not state.exists()

    filters.clear()
    assert run(["cleanup", f"--state-dir={state}", "--bpf-root=/x"], capsys) == (
        0,
        "nothing to remove\n",
        "",
    )


def test_cleanup_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["cleanup", "--wait=soon"], capsys)
    assert (code, out) == (2, "")
    assert err == "l2agent cleanup: invalid duration 'soon'\n"


def lease(holder: str, renewed: str, duration: int = 15) -> dict[str, object]:
    spec = {"holderIdentity": holder, "renewTime": renewed, "leaseDurationSeconds": duration}
    return {"metadata": {"name": "cilium-l2announce-default-web"}, "spec": spec}


NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("obj", "expired_at", "unused"),
    [
        (lease("", "2027-01-15T08:00:00.000000Z"), None, True),  # released
        (lease("node1", "2027-01-15T07:59:00.000000Z"), None, False),  # the agents' GC: held
        (lease("node1", "2027-01-15T07:59:44.000000Z"), NOW, True),  # 16 s old, duration 15 s
        (lease("node1", "2027-01-15T07:59:46.000000Z"), NOW, False),  # 14 s old: renewing
        (lease("node1", "yesterday"), NOW, False),  # unreadable: counts as held
        (lease("node1", "2027-01-15T07:00:00.000000Z", duration=0), NOW, False),
    ],
)
def test_a_lease_is_unused_when_released_or_not_renewed_within_its_duration(
    obj: dict[str, object], expired_at: float | None, unused: bool
) -> None:
    assert _unused(obj, expired_at) is unused
