"""Start-up of the command-line tools: whole-process wall time, median of 10 runs.

Each figure is printed beside the floor, the bare interpreter (``python -c pass``, the same venv
python, so ``site`` and the editable install's finder are in it too), measured interleaved with
the command so that both see the same machine load, and beside the command's CPU time (user +
system), which the load of other work on the machine disturbs less than the wall time:

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
import resource
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one whole process, its output read from a pipe."""
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env or ENV)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed, _children_cpu() - cpu0


def measure(argv: Sequence[str], runs: int = RUNS) -> tuple[float, float, float]:
    """Median ms of ``argv``'s wall time, of ``python -c pass``'s (runs interleaved), and of
    ``argv``'s CPU time (user + system, less sensitive to the machine's load)."""
    floor = [sys.executable, "-c", "pass"]
    run_once(argv)  # warm the page cache, write bytecode
    times, floors, cpus = [], [], []
    for _ in range(runs):
        floors.append(run_once(floor)[0])
        wall, cpu = run_once(argv)
        times.append(wall)
        cpus.append(cpu)
    return (
        statistics.median(times) * 1000,
        statistics.median(floors) * 1000,
        statistics.median(cpus) * 1000,
    )


ENTRY_POINTS = {"l2dbg": "dbg.main", "l2agent": "agent.main", "l2lab": "lab.cli"}


def entry(name: str, tree: str | None) -> list[str]:
    """The command that runs console script ``name``: the installed one, or the same entry point
    from the packages of another checkout ``tree`` (a worktree of an older commit: before/after)."""
    if tree is None:
        return [str(BIN / name)]
    code = (
        f"import sys; sys.path.insert(0, {tree!r}); sys.argv[0] = {name!r}\n"
        f"from {ENTRY_POINTS[name]} import main\nsys.exit(main())"
    )
    return [sys.executable, "-c", code]


def lab_up(name: str) -> bool:
    return (Path("/run/l2lab") / name / "state.json").exists()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--lab", default=os.environ.get("L2LAB_NAME", "l2lab"), help="lab to exec in")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--tree", help="run the entry points of the checkout in this directory")
    args = ap.parse_args()
    l2dbg, l2agent, l2lab = (entry(n, args.tree) for n in ("l2dbg", "l2agent", "l2lab"))
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    results: list[tuple[str, tuple[float, float, float] | None, float | None]] = []
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        state = Path(tmp)
        db = write_state(state)
        sd = ["--state-dir", str(state)]
        cases: list[tuple[str, list[str], float | None]] = [
            ("l2dbg --help", [*l2dbg, "--help"], DBG_BUDGET_MS),
            ("l2dbg statedb --help", [*l2dbg, "statedb", "--help"], DBG_BUDGET_MS),
            ("l2dbg config --help", [*l2dbg, "config", "--help"], DBG_BUDGET_MS),
            ("l2dbg statedb l2-announce", [*l2dbg, "statedb", "l2-announce", *sd], DBG_BUDGET_MS),
            (
                "l2dbg statedb l2-announce -o json",
                [*l2dbg, "statedb", "l2-announce", "-o", "json", *sd],
                DBG_BUDGET_MS,
            ),
            ("l2dbg statedb devices", [*l2dbg, "statedb", "devices", *sd], DBG_BUDGET_MS),
            (
                "l2dbg statedb devices -o json",
                [*l2dbg, "statedb", "devices", "-o", "json", *sd],
                DBG_BUDGET_MS,
            ),
            ("l2dbg config --all", [*l2dbg, "config", "--all", *sd], DBG_BUDGET_MS),
            (
                "l2dbg config --all -o json",
                [*l2dbg, "config", "--all", "-o", "json", *sd],
                DBG_BUDGET_MS,
            ),
            ("l2agent --help", [*l2agent, "--help"], None),
            ("l2lab --help", [*l2lab, "--help"], None),
        ]
        try:
            for label, argv, target in cases:
                results.append((label, measure(argv, args.runs), target))
        finally:
            db.close()
    exec_label = "l2lab exec node1 -- true"
    if lab_up(args.lab):
        argv = [*l2lab, "--name", args.lab, "exec", "node1", "--", "true"]
        results.append((exec_label, measure(argv, args.runs), LAB_EXEC_BUDGET_MS))
    else:
        results.append((exec_label, None, LAB_EXEC_BUDGET_MS))
    if args.json:
        print(
            json.dumps(
                {
                    label: dict(zip(("median_ms", "floor_ms", "cpu_ms"), m, strict=True))
                    for label, m, _ in results
                    if m is not None
                }
            )
        )
    failed = False
    print(
        f"{'command (median of ' + str(args.runs) + ')':<36} {'ms':>7} {'floor':>7} {'cpu':>7}  target"
    )
    for label, m, target in results:
        if m is None:
            print(f"{label:<36} {'skipped':>7}  (no lab {args.lab!r} up; run as root)")
            continue
        med, floor, cpu = m
        verdict = ""
        if target is not None:
            ok = med <= target
            failed |= not ok
            verdict = f"<= {target:.0f} ms {'ok' if ok else 'MISSED'}"
        print(f"{label:<36} {med:>7.1f} {floor:>7.1f} {cpu:>7.1f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
