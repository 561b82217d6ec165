"""Benchmarks of the real control plane the lab and the tests run on (issue 12).

- the build script's cache hit (``scripts/controlplane-build.sh`` with the binaries present);
- start to ready: etcd healthy, kube-apiserver ``/readyz`` ok, then the ``default`` namespace, the
  ``kubernetes`` Service and the ``default`` ServiceAccount (kube-controller-manager) present;
  each step's time from the start, over several runs;
- resident memory of each process once ready and after a quiet ``--settle`` seconds.

The cold build is measured by the build script itself (it prints each step's time); its figures
are in docs/benchmarks.md with the machine they came from.

Run: ``.venv/bin/python bench/controlplane.py [--runs 5] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.controlplane import BUILD_SCRIPT, ControlPlane, binaries  # noqa: E402

TARGETS = {"ready_s_median": ("<=", 10.0)}
MIB = 1024 * 1024


def cache_hit_seconds(runs: int = 3) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(BUILD_SCRIPT)], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def rss(cp: ControlPlane) -> dict[str, int]:
    """Resident memory of each running component, in bytes."""
    out = {}
    for component, proc in cp.procs.items():
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out[component] = int(line.split()[1]) * 1024
    return out


def start_once(bin_dir: Path, settle: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="l2bench-cp-") as tmp:
        cp = ControlPlane(Path(tmp), bin_dir)
        cp.start()
        try:
            rss_ready = rss(cp)
            time.sleep(settle)
            rss_settled = rss(cp)
        finally:
            cp.stop()
    return {"timings": cp.timings, "rss_ready": rss_ready, "rss_settled": rss_settled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    bin_dir = binaries()
    hits = cache_hit_seconds()
    runs = [start_once(bin_dir, args.settle if i == 0 else 0.0) for i in range(args.runs)]
    steps = ("pki", "kube-apiserver", "ready")
    result: dict[str, Any] = {
        "cache_hit_s": hits,
        "steps_s_median": {s: statistics.median(r["timings"][s] for r in runs) for s in steps},
        "ready_s": [round(r["timings"]["ready"], 2) for r in runs],
        "ready_s_median": statistics.median(r["timings"]["ready"] for r in runs),
        "rss_ready_mib": {k: v / MIB for k, v in runs[0]["rss_ready"].items()},
        "rss_settled_mib": {k: v / MIB for k, v in runs[0]["rss_settled"].items()},
    }
    ok = True
    for key, (op, bound) in TARGETS.items():
        value = result[key]
        met = value <= bound if op == "<=" else value >= bound
        ok &= met
        result.setdefault("targets", {})[key] = (
            f"{value:.2f} {op} {bound}: {'met' if met else 'MISSED'}"
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"build script, cache hit: {', '.join(f'{t:.2f}s' for t in hits)}")
        print("start, median of each step's time from the start: " + ", ".join(
            f"{s} {t:.2f}s" for s, t in result["steps_s_median"].items()))  # fmt: skip
        print(f"start to ready, {args.runs} runs: {result['ready_s']}")
        for label, key in (("once ready", "rss_ready_mib"),
                           (f"after {args.settle:g}s", "rss_settled_mib")):  # fmt: skip
            print(f"RSS {label}: " + ", ".join(
                f"{k} {v:.0f} MiB" for k, v in result[key].items()))  # fmt: skip
        for line in result["targets"].values():
            print("target: " + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
