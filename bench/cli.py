"""Start-up of the command-line tools: whole-process wall time, median of 10 runs.

Each figure is printed beside the floor, the bare interpreter (``python -c pass``, the same venv
python, so ``site`` and the editable install's finder are in it too), measured interleaved with
the command so that both see the same machine load:

- ``l2dbg --help``, ``l2dbg statedb --help``, ``l2dbg config --help``;
- ``l2dbg statedb l2-announce``, ``l2dbg statedb devices``, ``l2dbg config --all``, plain (piped)
  and ``-o json``, on a state database of 1,000 rows in each of those tables;
- ``l2agent --help``, ``l2lab --help``;
- ``l2lab exec node1 -- true`` when a lab is up (``--lab NAME``, default ``$L2LAB_NAME`` or
  ``l2lab``; root), else reported as skipped.

Modules load from cached bytecode (written by the warm-up run of each command if missing), as in
the image.

Run: ``.venv/bin/python bench/cli.py`` (``sudo`` for the lab figure). Figures go in
docs/benchmarks.md. Exit code 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.tables import CONFIG, DEVICES, L2_ANNOUNCE  # noqa: E402
from common.tables.config import ConfigEntry  # noqa: E402
from common.tables.devices import Device, DeviceAddress  # noqa: E402
from common.tables.l2_announce import L2AnnounceEntry, Origin  # noqa: E402
from statedb import Database  # noqa: E402

BIN = Path(sys.executable).parent
ROWS = 1_000
RUNS = 10
DBG_BUDGET_MS = 150.0
LAB_EXEC_BUDGET_MS = 300.0


def write_state(state_dir: Path, rows: int = ROWS) -> Database:
    """A live writer holding ``rows`` rows in l2-announce, devices and config."""
    db = Database.open(state_dir / "statedb.sqlite", [CONFIG, DEVICES, L2_ANNOUNCE])
    with db.write_txn(CONFIG, DEVICES, L2_ANNOUNCE) as txn:
        txn.upsert_many(
            L2_ANNOUNCE,
            [
                L2AnnounceEntry(
                    f"198.51.{(i // 250) % 250}.{i % 250}",
                    "eth0",
                    (Origin("default", f"service-{i}"),),
                )
                for i in range(rows)
            ],
        )
        txn.upsert_many(
            DEVICES,
            [
                Device(
                    ifindex=i + 1,
                    name=f"eth{i}",
                    type="veth",
                    hw_addr=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
                    raw_flags=0x1043,
                    addresses=(DeviceAddress(f"10.{i // 250}.{i % 250}.1"),),
                    selected=i % 2 == 0,
                    not_selected_reason="" if i % 2 == 0 else 'excluded prefix "eth"',
                )
                for i in range(rows)
            ],
        )
        txn.upsert_many(
            CONFIG,
            [
                ConfigEntry(f"setting-{i:04d}", f"Setting{i:04d}", str(i), "default")
                for i in range(rows)
            ],
        )
    return db


# Bytecode may be written, so that after the first (warm-up) run every module loads from its
# cached .pyc, as in the image, whose pip install compiles them.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Seconds of one whole process, its output read from a pipe."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env or ENV)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


def measure(argv: Sequence[str], runs: int = RUNS) -> tuple[float, float]:
    """(median ms of ``argv``, median ms of ``python -c pass``), runs interleaved."""
    floor = [sys.executable, "-c", "pass"]
    run_once(argv)  # warm the page cache
    times, floors = [], []
    for _ in range(runs):
        floors.append(run_once(floor))
        times.append(run_once(argv))
    return statistics.median(times) * 1000, statistics.median(floors) * 1000


def lab_up(name: str) -> bool:
    return (Path("/run/l2lab") / name / "state.json").exists()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--lab", default=os.environ.get("L2LAB_NAME", "l2lab"), help="lab to exec in")
    ap.add_argument("--runs", type=int, default=RUNS)
    args = ap.parse_args()
    l2dbg, l2agent, l2lab = (str(BIN / n) for n in ("l2dbg", "l2agent", "l2lab"))
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    results: list[tuple[str, float | None, float | None, float | None]] = []
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        state = Path(tmp)
        db = write_state(state)
        sd = ["--state-dir", str(state)]
        cases: list[tuple[str, list[str], float | None]] = [
            ("l2dbg --help", [l2dbg, "--help"], DBG_BUDGET_MS),
            ("l2dbg statedb --help", [l2dbg, "statedb", "--help"], DBG_BUDGET_MS),
            ("l2dbg config --help", [l2dbg, "config", "--help"], DBG_BUDGET_MS),
            ("l2dbg statedb l2-announce", [l2dbg, "statedb", "l2-announce", *sd], DBG_BUDGET_MS),
            (
                "l2dbg statedb l2-announce -o json",
                [l2dbg, "statedb", "l2-announce", "-o", "json", *sd],
                DBG_BUDGET_MS,
            ),
            ("l2dbg statedb devices", [l2dbg, "statedb", "devices", *sd], DBG_BUDGET_MS),
            (
                "l2dbg statedb devices -o json",
                [l2dbg, "statedb", "devices", "-o", "json", *sd],
                DBG_BUDGET_MS,
            ),
            ("l2dbg config --all", [l2dbg, "config", "--all", *sd], DBG_BUDGET_MS),
            (
                "l2dbg config --all -o json",
                [l2dbg, "config", "--all", "-o", "json", *sd],
                DBG_BUDGET_MS,
            ),
            ("l2agent --help", [l2agent, "--help"], None),
            ("l2lab --help", [l2lab, "--help"], None),
        ]
        try:
            for label, argv, target in cases:
                med, floor = measure(argv, args.runs)
                results.append((label, med, floor, target))
        finally:
            db.close()
    exec_label = "l2lab exec node1 -- true"
    if lab_up(args.lab):
        med, floor = measure([l2lab, "--name", args.lab, "exec", "node1", "--", "true"], args.runs)
        results.append((exec_label, med, floor, LAB_EXEC_BUDGET_MS))
    else:
        results.append((exec_label, None, None, LAB_EXEC_BUDGET_MS))
    if args.json:
        print(json.dumps({label: {"median_ms": m, "floor_ms": f} for label, m, f, _ in results}))
    failed = False
    print(f"{'command (median of ' + str(args.runs) + ')':<36} {'ms':>8} {'floor ms':>9}  target")
    for label, med, floor, target in results:
        if med is None or floor is None:
            print(f"{label:<36} {'skipped':>8} {'':>9}  (no lab {args.lab!r} up; run as root)")
            continue
        verdict = ""
        if target is not None:
            ok = med <= target
            failed |= not ok
            verdict = f"<= {target:.0f} ms {'ok' if ok else 'MISSED'}"
        print(f"{label:<36} {med:>8.1f} {floor:>9.1f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
