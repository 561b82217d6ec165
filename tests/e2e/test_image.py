"""The container image: `make image`'s script builds it from Debian packages and the PyPI
packages pinned in requirements.lock (mmdebstrap base, `podman build --isolation chroot`) and
checks it; the real datapath loads inside it with exactly the DaemonSet's capabilities and fails
without any one of them; and the agent, run from the image's root filesystem in a lab node the
way the DaemonSet runs it (tests/e2e/image_agent.py), with no kernel headers anywhere in its
view, takes the Service's Lease and the lab client's ARP for the VIP is answered with that
node's MAC.

Part of `make test` when the tools are there (root, podman, buildah and mmdebstrap, which
scripts/bootstrap.sh installs): the build is cached by the hash of its inputs (the base, the
Dockerfile, the lock file, the build context), so it costs about a minute and a half on a machine
that never built it (2 cores) and a few seconds after. L2ANNOUNCER_TEST_IMAGE=0 skips it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bpf.attach import FILTER_NAME
from lab import lab
from lab.inventory import RUN_DIR, LabState, node_mac
from tests.e2e.image_agent import KHEADERS, ImageNode, stop, unpack
from tests.e2e.lab_extras import holder_of, until

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "image.sh"
IMAGE = "localhost/l2announcer:test"
TOOLS = ("podman", "buildah", "mmdebstrap")
LAB_NAME = re.compile(r"^img[0-9a-f]{4}$")

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("L2ANNOUNCER_TEST_IMAGE") == "0",
        reason="the image test was turned off (L2ANNOUNCER_TEST_IMAGE=0)",
    ),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS),
        reason="the image test needs podman, buildah and mmdebstrap, which are not installed "
        "(make bootstrap installs them as root on Debian 12)",
    ),
    pytest.mark.timeout(1800),
]

# The smallest tc program, compiled by bcc the way it does by default: against the kernel
# headers it finds on the machine (/lib/modules/$(uname -r), /usr/src, kheaders).
_DEFAULT_COMPILE = r"""
from bcc import BPF
text = b'''
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
int probe(struct __sk_buff *skb) { return TC_ACT_OK; }
'''
BPF(text=text)
print("compiled")
"""


# Prints any kernel header the container can see: the trees bcc looks in, the UAPI headers of a
# linux-libc-dev, a readable kheaders archive.
_HEADERS_IN_VIEW = (
    "find /lib/modules /usr/src -mindepth 1 2>/dev/null; "
    "find /usr/include \\( -name linux -o -name 'asm*' \\) 2>/dev/null; "
    f"if [ -s {KHEADERS} ]; then echo {KHEADERS}; fi; true"
)


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


@pytest.fixture(scope="module")
def rootfs(built: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = unpack(built, tmp_path_factory.mktemp("image") / "rootfs")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _take_down_crashed_labs() -> None:
    """Labs of this test left by a run that died before its clean-up (not those of a run that is
    still going: each names its pid in an owner file)."""
    for directory in RUN_DIR.glob("img*") if RUN_DIR.exists() else []:
        name = directory.name
        if not LAB_NAME.match(name):
            continue
        owner = RUN_DIR / f"{name}.img-owner"
        try:
            alive = Path(f"/proc/{int(owner.read_text())}").exists()
        except (OSError, ValueError):
            alive = False
        if not alive:
            lab.down(name, say=lambda _: None)
            owner.unlink(missing_ok=True)


@pytest.fixture
def lab_state() -> Iterator[LabState]:
    # A lab of its own, always taken down afterwards.
    _take_down_crashed_labs()
    name = f"img{secrets.token_hex(2)}"
    owner = RUN_DIR / f"{name}.img-owner"
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    owner.write_text(str(os.getpid()))
    try:
        with lab.running(name, nodes=1, services=1, say=print) as state:
            yield state
    finally:
        owner.unlink(missing_ok=True)


def test_the_scripts_checks(built: str) -> None:
    result = run_script("smoke")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for check in (
        "l2agent --help",
        "l2dbg --help",
        "import bcc",
        "bpftool version",
        "no kernel headers in the image",
    ):
        assert f"smoke PASSED: {check}" in out, out


def test_a_second_build_with_the_same_inputs_is_skipped(built: str) -> None:
    result = run_script("build")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{IMAGE} is up to date (inputs " in result.stdout, result.stdout


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


def _arping(state: LabState, vip: str) -> list[str]:
    """The MACs that answered the client's three ARP requests for ``vip``, one per answer."""
    out = lab.run_in(state, "client", ["arping", "-c", "3", "-W", "0.2", "-i", "eth0", vip])
    return re.findall(r"bytes from ([0-9a-f:]{17}) ", out)


def _ingress_filters(state: LabState, node: str) -> str:
    return lab.run_in(state, node, ["tc", "filter", "show", "dev", "eth0", "ingress"])


def test_the_agent_from_the_image_answers_arp_in_a_lab_node_without_kernel_headers(
    built: str, rootfs: Path, lab_state: LabState, tmp_path: Path
) -> None:
    state, node = lab_state, "node1"
    vip = state.vips()["service-1"]
    # The lab's own agent (from the venv) stops: it releases the Lease and detaches its
    # program, so nothing in the node answers until the image's agent does.
    assert lab.signal_agent(state, node, signal.SIGTERM, wait=15)
    assert _arping(state, vip) == []
    assert FILTER_NAME not in _ingress_filters(state, node)

    container = ImageNode(state, node, rootfs, tmp_path / "container", built)
    # No kernel headers in its view: none in the image, none mounted from the host, kheaders
    # covered; and bcc's own default compile, which looks for them, fails there.
    seen = container.run(["sh", "-c", _HEADERS_IN_VIEW])
    assert (seen.returncode, seen.stdout) == (0, ""), seen.stdout + seen.stderr
    default = container.run(["python3", "-c", _DEFAULT_COMPILE], timeout=120)
    assert default.returncode != 0, default.stdout
    assert "Unable to find kernel headers" in default.stdout + default.stderr

    log = tmp_path / "agent.log"
    with container.agent(log) as (agent, ready):
        print(
            f"image agent: start to /healthz 200 {ready.healthz} s, to /readyz 200 {ready.readyz} s"
        )
        assert agent.poll() is None, log.read_text()[-3000:]
        assert ready.readyz is not None, log.read_text()[-3000:]
        until(lambda: holder_of(state, "service-1") == node, "the image's agent holds the Lease")
        until(lambda: bool(_arping(state, vip)), "an ARP answer for the VIP", timeout=30, poll=0.5)
        assert _arping(state, vip) == [node_mac(1)] * 3
        assert FILTER_NAME in _ingress_filters(state, node)
        announced = container.run(["l2dbg", "statedb", "l2-announce"])
        assert re.search(rf"^{re.escape(vip)}\s+eth0$", announced.stdout, re.M), announced
    assert stop(agent) == 0, log.read_text()[-3000:]
