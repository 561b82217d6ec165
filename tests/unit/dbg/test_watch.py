"""``--watch``: the table once, then changed rows as they commit, deletions marked, until Ctrl-C."""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from common.tables import L2_ANNOUNCE
from common.tables.l2_announce import L2AnnounceEntry
from dbg.output import Output
from dbg.watch import HEADER_EVERY, watch
from statedb import Database, Status, StatusKind
from tests.unit.dbg.fixtures import REPO, invoke, l2dbg_executable, open_db, write_rows

A = L2AnnounceEntry("198.51.100.10", "eth0")
B = L2AnnounceEntry("198.51.100.11", "eth0")
C = L2AnnounceEntry("198.51.100.12", "eth1")


def _upsert(db: Database, *rows: L2AnnounceEntry) -> None:
    write_rows(db, {L2_ANNOUNCE: rows})


def _delete(db: Database, row: L2AnnounceEntry) -> None:
    with db.write_txn(L2_ANNOUNCE) as txn:
        txn.delete(L2_ANNOUNCE, row)


def _run_watch(
    state_dir: Path, steps: list[Callable[[], None]], output: Output = Output.PLAIN
) -> str:
    """Watch in-process; before each poll the next step commits something."""
    pending = iter(steps)
    out = io.StringIO()

    def sleep(_seconds: float) -> None:
        step = next(pending, None)
        if step is None:
            raise KeyboardInterrupt  # what Ctrl-C does to the loop
        step()

    watch(state_dir, L2_ANNOUNCE, output, 0.01, out, sleep=sleep)
    return out.getvalue()


def test_changes_and_deletions_are_printed_as_they_commit(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        _upsert(db, A, B)
        text = _run_watch(
            tmp_path,
            [
                lambda: _upsert(db, C),
                lambda: None,  # nothing committed: nothing printed
                lambda: _delete(db, A),
                lambda: _upsert(
                    db, L2AnnounceEntry(B.ip, B.network_interface, status=Status(StatusKind.DONE))
                ),
            ],
        )
    assert text == (
        "# IP            NetworkInterface\n"
        "198.51.100.10   eth0\n"
        "198.51.100.11   eth0\n"
        "198.51.100.12   eth1\n"
        "- 198.51.100.10   eth0\n"  # the column widened for the marker, and stays wider
        "198.51.100.11     eth0\n"  # a new revision of B (its status changed)
    )


def test_a_commit_to_another_table_prints_nothing(tmp_path: Path) -> None:
    from common.tables import DEVICES
    from tests.unit.dbg.fixtures import LO

    with open_db(tmp_path) as db:
        _upsert(db, A)
        text = _run_watch(tmp_path, [lambda: write_rows(db, {DEVICES: [LO]})])
    assert text == "# IP            NetworkInterface\n198.51.100.10   eth0\n"


def test_header_is_repeated_every_hundred_rows(tmp_path: Path) -> None:
    rows = [L2AnnounceEntry(f"10.0.{i // 200}.{i % 200}", "eth0") for i in range(HEADER_EVERY + 20)]
    with open_db(tmp_path) as db:
        _upsert(db, *rows[:50])
        text = _run_watch(tmp_path, [lambda: _upsert(db, *rows[50:])])
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("# ")]
    assert headers == [0, HEADER_EVERY + 1]
    assert len(lines) == len(rows) + 2


def test_json_prints_one_object_per_change(tmp_path: Path) -> None:
    import json

    with open_db(tmp_path) as db:
        _upsert(db, A)
        text = _run_watch(tmp_path, [lambda: _delete(db, A)], output=Output.JSON)
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["Deleted"], r["Object"]["IP"]) for r in records] == [(False, A.ip), (True, A.ip)]
    assert records[1]["Revision"] > records[0]["Revision"]


def test_yaml_prints_one_document_per_change(tmp_path: Path) -> None:
    import yaml

    with open_db(tmp_path) as db:
        _upsert(db, A, B)
        text = _run_watch(tmp_path, [lambda: _delete(db, B)], output=Output.YAML)
    docs = list(yaml.safe_load_all(text))
    assert [(d["Deleted"], d["Object"]["IP"]) for d in docs] == [
        (False, A.ip),
        (False, B.ip),
        (True, B.ip),
    ]


def test_a_writer_that_starts_later_is_followed(tmp_path: Path) -> None:
    """Opened while no writer ran (immutable), then the agent starts and rebuilds its tables."""
    with open_db(tmp_path) as db:
        _upsert(db, A)
    writers: list[Database] = []

    def agent_starts() -> None:
        writers.append(open_db(tmp_path))
        _upsert(writers[0], C)

    try:
        text = _run_watch(tmp_path, [agent_starts])
    finally:
        for w in writers:
            w.close()
    assert text == (
        "# IP            NetworkInterface\n"
        "198.51.100.10   eth0\n"
        "198.51.100.12     eth1\n"  # one batch is aligned as a whole, like one tabwriter flush
        "- 198.51.100.10   eth0\n"
    )


def test_count_stops_after_that_many_batches(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        _upsert(db, A)
        out = invoke(
            ["statedb", "l2-announce", "-w", "10ms", "--count", "1", "--state-dir", str(tmp_path)]
        )
    assert (out.code, out.stdout) == (0, "# IP            NetworkInterface\n198.51.100.10   eth0\n")


def _reader(stream: io.TextIOBase | None) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert stream is not None
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _next_line(lines: queue.Queue[str]) -> str:
    return lines.get(timeout=10)


@pytest.mark.parametrize("flag", [["-w", "50ms"], ["--watch=50ms"], ["-w50ms"]])
def test_installed_l2dbg_watches_until_ctrl_c(tmp_path: Path, flag: list[str]) -> None:
    with open_db(tmp_path) as db:
        _upsert(db, A)
        proc = subprocess.Popen(
            [
                str(l2dbg_executable()),
                "statedb",
                "l2-announce",
                *flag,
                "--state-dir",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            lines = _reader(proc.stdout)  # type: ignore[arg-type]
            assert _next_line(lines) == "# IP            NetworkInterface\n"
            assert _next_line(lines) == "198.51.100.10   eth0\n"
            _upsert(db, C)
            assert _next_line(lines) == "198.51.100.12   eth1\n"
            _delete(db, A)
            assert _next_line(lines) == "- 198.51.100.10   eth0\n"
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
            assert proc.stderr is not None
            assert proc.stderr.read() == ""  # no traceback
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_bare_watch_flag_means_one_second(tmp_path: Path) -> None:
    with open_db(tmp_path) as db:
        _upsert(db, A)
    proc = subprocess.Popen(
        [
            str(l2dbg_executable()),
            "statedb",
            "l2-announce",
            "--watch",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = _reader(proc.stdout)  # type: ignore[arg-type]
        assert _next_line(lines).startswith("# IP")
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
