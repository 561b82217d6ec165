"""The container image: `make image`'s script builds it from Debian and PyPI packages only
(mmdebstrap base, `podman build --isolation chroot`) and smoke-tests it; the real datapath loads
inside it with exactly the DaemonSet's capabilities and fails without any one of them; and the
agent, run as the DaemonSet runs it against a real control plane (etcd, kube-apiserver,
kube-controller-manager: lab/controlplane.py), announces a Service IP that arping then gets
answered (tests/e2e/image_agent.py).

Opt-in (L2ANNOUNCER_TEST_IMAGE=1): a cold build takes about a minute here and several on a slow
mirror, too long for every CI run. Needs root and podman (scripts/image.sh installs podman,
buildah and mmdebstrap when missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "image.sh"
IMAGE = "localhost/l2announcer:test"

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("L2ANNOUNCER_TEST_IMAGE") != "1",
        reason="image build is opt-in (minutes): set L2ANNOUNCER_TEST_IMAGE=1, or run make image",
    ),
    pytest.mark.skipif(
        shutil.which("podman") is None,
        reason="podman is not installed (make image installs it)",
    ),
    pytest.mark.timeout(1800),
]


def run_script(*args: str, caps: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGE": IMAGE}
    if caps is not None:
        env["CAPS"] = caps
    return subprocess.run(
        [str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=1700
    )


def daemonset_capabilities() -> list[str]:
    ds = yaml.safe_load((REPO / "deploy" / "daemonset.yaml").read_text())
    caps: list[str] = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "capabilities"
    ]["add"]
    return caps


@pytest.fixture(scope="module")
def built() -> str:
    result = run_script("build")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return IMAGE


def test_smoke(built: str) -> None:
    result = run_script("smoke")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "smoke PASSED: l2dbg --help" in out
    assert "smoke PASSED: import bcc" in out
    # l2agent --help is checked once the console script exists; until then it is reported.
    assert "smoke PASSED: l2agent --help" in out or "smoke SKIPPED: l2agent --help" in out


def test_datapath_loads_with_exactly_the_daemonsets_capabilities(built: str) -> None:
    if not Path("/sys/fs/bpf").is_mount():
        pytest.skip("bpffs is not mounted on /sys/fs/bpf")
    caps = daemonset_capabilities()
    result = run_script("datapath", caps=" ".join(caps))
    assert result.returncode == 0, result.stdout + result.stderr
    for missing in caps:
        fewer = " ".join(c for c in caps if c != missing)
        result = run_script("datapath", caps=fewer)
        assert result.returncode != 0, f"the datapath worked without {missing}: {result.stdout}"


def test_the_agent_runs_as_the_daemonset_runs_it(built: str, tmp_path: Path) -> None:
    if not Path("/sys/fs/bpf").is_mount():
        pytest.skip("bpffs is not mounted on /sys/fs/bpf")
    if shutil.which("arping") is None:
        pytest.skip("arping is needed")
    ns = f"l2img-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (
            "link set lo up",
            "link add l2a type veth peer name l2b",
            "link set l2a up",
            "link set l2b up",
            "addr add 192.0.2.1/24 dev l2a",
            "addr add 192.0.2.2/24 dev l2b",
        ):
            subprocess.run(["ip", "-n", ns, *cmd.split()], check=True)
        module = [sys.executable, "-m", "tests.e2e.image_agent", str(tmp_path / "work"), built]
        result = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns}", *module],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    log = outcome["agent_log_tail"]
    assert outcome["holder"] == "node1", log
    assert outcome["health_probe_rc"] == 0, log
    assert "192.0.2.100   l2a" in outcome["l2_announce"], outcome["l2_announce"]
    assert outcome["arping_rc"] == 0, outcome["arping"]
    assert outcome["responses_sent"] >= 1
