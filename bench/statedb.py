"""Benchmarks of the state database, against the targets in ``TARGETS`` below.

- upserts per second, batched 1,000 rows per commit (in memory, and in a WAL file on tmpfs as
  the agent runs it);
- commit-to-wakeup latency of a consumer blocked in ``Consumer.wait`` (median, p99), measured
  from just before ``commit()`` to the waiter running again (so it includes the commit itself);
- wall time of ``l2dbg statedb l2-announce`` on 1,000 rows, a fresh process each run (median).

Run: ``.venv/bin/python bench/statedb.py`` (or ``make bench``). Figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.tables import CATALOGUE, L2_ANNOUNCE  # noqa: E402
from common.tables.l2_announce import L2AnnounceEntry, Origin  # noqa: E402
from statedb import Database  # noqa: E402

TARGETS = {
    "upserts_per_s_file": (">=", 50_000),
    "wakeup_p99_ms": ("<=", 5.0),
    "l2dbg_l2_announce_median_ms": ("<=", 150.0),
}


def _entries(n: int, salt: int = 0) -> list[L2AnnounceEntry]:
    return [
        L2AnnounceEntry(
            f"198.51.{(i // 250) % 250}.{i % 250}",
            f"eth{salt}",
            (Origin("default", f"service-{i}"),),
        )
        for i in range(n)
    ]


def bench_upserts(path: str | None, total: int = 200_000, batch: int = 1_000) -> float:
    with Database.open(path, CATALOGUE.values()) as db:
        rows = _entries(total)
        start = time.perf_counter()
        for k in range(0, total, batch):
            with db.write_txn(L2_ANNOUNCE) as txn:
                txn.upsert_many(L2_ANNOUNCE, rows[k : k + batch])
        return total / (time.perf_counter() - start)


def bench_wakeup(path: str | None, rounds: int = 2_000) -> tuple[float, float]:
    with Database.open(path, CATALOGUE.values()) as db:
        consumer = db.register_consumer("bench", L2_ANNOUNCE)
        consumer.changes()
        woke = threading.Event()
        ready = threading.Event()
        stop = False
        wake_times: list[float] = []

        def waiter() -> None:
            while not stop:
                ready.set()
                if consumer.wait(timeout=1.0):
                    wake_times.append(time.perf_counter())
                    consumer.changes()
                    woke.set()

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        latencies: list[float] = []
        for i in range(rounds):
            ready.wait()
            ready.clear()
            woke.clear()
            txn = db.write_txn(L2_ANNOUNCE)
            txn.upsert(L2_ANNOUNCE, L2AnnounceEntry(f"203.0.113.{i % 250}", f"eth{i}"))
            t0 = time.perf_counter()
            txn.commit()
            if not woke.wait(timeout=5):
                raise RuntimeError("waiter was not woken")
            latencies.append((wake_times[-1] - t0) * 1000)
        stop = True
        t.join(timeout=2)
        latencies.sort()
        return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def bench_l2dbg(state_dir: Path, runs: int = 30) -> float | None:
    exe = shutil.which("l2dbg", path=str(ROOT / ".venv" / "bin")) or shutil.which("l2dbg")
    if exe is None:
        return None
    db = Database.open(state_dir / "statedb.sqlite", CATALOGUE.values())
    try:
        with db.write_txn(L2_ANNOUNCE) as txn:
            txn.upsert_many(L2_ANNOUNCE, _entries(1_000))
        cmd = [exe, "statedb", "l2-announce", "--state-dir", str(state_dir)]
        first = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if first.returncode != 0 or first.stdout.count("\n") != 1_001:
            raise RuntimeError(f"l2dbg failed or printed the wrong rows: {first.stderr.strip()}")
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.PIPE, check=True)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    finally:
        db.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        results["upserts_per_s_memory"] = bench_upserts(None)
        results["upserts_per_s_file"] = bench_upserts(os.path.join(tmp, "a", "statedb.sqlite"))
        med, p99 = bench_wakeup(os.path.join(tmp, "b", "statedb.sqlite"))
        results["wakeup_median_ms"], results["wakeup_p99_ms"] = med, p99
        state = Path(tmp, "c")
        state.mkdir()
        results["l2dbg_l2_announce_median_ms"] = bench_l2dbg(state)
    if args.json:
        print(json.dumps(results, indent=2))
    failed = False
    print(f"{'figure':<32} {'value':>12}  target")
    for name, value in results.items():
        op, target = TARGETS.get(name, ("", None))
        if value is None:
            verdict = "not measured (l2dbg not installed)"
            failed = True
        elif target is None:
            verdict = ""
        else:
            ok = value >= target if op == ">=" else value <= target
            failed |= not ok
            verdict = f"{op} {target:g}  {'ok' if ok else 'MISSED'}"
        shown = "-" if value is None else f"{value:,.1f}" if value >= 100 else f"{value:.3f}"
        print(f"{name:<32} {shown:>12}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
