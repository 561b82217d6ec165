"""`l2agent cleanup` on a node must not take the datapath from under a running agent. In a pod
the agent's state directory is the pod's own memory volume, so the writer lock there is not in
view of a cleanup run from elsewhere on the node; the liveness stamp in the node's bpffs is."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bpf import program
from bpf.maps import LIVENESS_MAP_NAME, RESPONDER_MAP_NAME, LivenessMap

L2AGENT = str(Path(sys.executable).parent / "l2agent")


def cleanup(bpf_root: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [L2AGENT, "cleanup", f"--bpf-root={bpf_root}", f"--state-dir={state_dir}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cleanup_refuses_while_the_liveness_stamp_is_fresh_then_removes_the_pins(
    bpf_root: str, tmp_path: Path
) -> None:
    prog = program.load(bpf_root)
    try:
        with LivenessMap.open(f"{bpf_root}/{LIVENESS_MAP_NAME}") as lv:
            lv.set_max_age(60 * 10**9)
            lv.stamp(time.monotonic_ns())  # as an agent that vouches for its datapath
            refused = cleanup(bpf_root, tmp_path)
            assert (refused.returncode, refused.stdout) == (1, ""), refused
            assert refused.stderr.startswith(
                "l2agent cleanup: an agent is answering on this node (its liveness stamp in "
                f"{bpf_root}/{LIVENESS_MAP_NAME} is "
            ), refused.stderr
            assert Path(bpf_root, RESPONDER_MAP_NAME).exists()

            lv.stamp(time.monotonic_ns() - 61 * 10**9)  # the agent stopped a minute ago
    finally:
        prog.close()
    done = cleanup(bpf_root, tmp_path)
    assert (done.returncode, done.stderr) == (0, ""), done
    assert f"removed BPF pin {bpf_root}/{LIVENESS_MAP_NAME}" in done.stdout.splitlines()
    assert not Path(bpf_root, RESPONDER_MAP_NAME).exists()
