"""The agent run from the image's root filesystem in a lab node, the way the DaemonSet runs it.

The image is unpacked into a plain directory (``podman create`` + ``podman export``), so it can
be entered from a lab node's own mount namespace, which does not see mounts made on the host
after the lab came up. A command from the image runs in a node (:class:`ImageNode`) like a
container of the DaemonSet:

- in the node's sandbox: its network namespace, its own ``/sys`` with its bpffs on
  ``/sys/fs/bpf``, its ``/run/l2announcer`` (docs/lab.md, "Node sandboxes");
- in a private mount namespace of its own, with the image's root filesystem bound read-only
  (``readOnlyRootFilesystem``) and on it the DaemonSet's volumes: the ConfigMap's keys as files
  on ``/etc/l2announcer`` (read-only), the state directory, the bpffs (with ``/sys``), a tmpfs on
  ``/tmp``, and the ServiceAccount volume the kubelet mounts (a token minted by kube-apiserver,
  the cluster's CA, the namespace); ``/proc`` and ``/dev``;
- and nothing else of the host: no ``/lib/modules``, ``/usr/src`` or ``/usr/include`` (the image
  has none and none is mounted), ``/sys/kernel/kheaders.tar.xz`` covered by ``/dev/null``;
- ``chroot`` into it, then the image's own ``setpriv``: uid 0 with only the DaemonSet's
  capabilities (``drop: [ALL]``, its ``add`` list) and ``no_new_privs``
  (``allowPrivilegeEscalation: false``);
- with the image's environment (its ``ENV``), the DaemonSet's literal env values, what its
  ``fieldRef`` ones resolve to (``NODE_NAME``, the namespace) and what the kubelet adds
  (``KUBERNETES_SERVICE_HOST``/``PORT``: the lab's kube-apiserver), so the agent uses the
  in-cluster configuration with the ServiceAccount's RBAC from deploy/.

tests/e2e/test_image.py uses it. ``python -m tests.e2e.image_agent [--image I] [--starts N]``
(root) measures start to ready: it brings up a one-node lab, starts the agent from the image N
times and the lab's own agent (from the venv) N times in the same node, and prints one JSON
object, the figures of docs/benchmarks.md ("Image").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.config import KEYS_BY_NAME
from lab import lab
from lab.inventory import API_LAN_IP, API_PORT, SERVICE_ACCOUNT, LabState
from lab.netns import NETNS_DIR

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
HEALTH_PORT = int(KEYS_BY_NAME["agent-health-port"].default)
KHEADERS = "/sys/kernel/kheaders.tar.xz"
ACCOUNT_DIR = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is a link to /run

# Runs in a fresh private mount namespace inside the node's sandbox (its mounts vanish with the
# command): the container's mounts over the image's root filesystem, then chroot and the
# DaemonSet's privileges. $1 root, $2 config dir, $3 ServiceAccount dir, $4 capabilities as
# setpriv takes them, $5 the state dir's path in the image; the command follows.
_CONTAINER = r"""
set -e
root=$1 config=$2 account=$3 caps=$4 state=$5
shift 5
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --rbind /sys "$root/sys"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o size=128m,mode=1777 tmpfs "$root/tmp"
mount --bind /run/l2announcer "$root$state"
mount --bind "$config" "$root/etc/l2announcer"
mount -o remount,bind,ro "$root/etc/l2announcer"
mount --bind "$account" "$root/run/secrets/kubernetes.io/serviceaccount"
mount -o remount,bind,ro "$root/run/secrets/kubernetes.io/serviceaccount"
if [ -e "$root/sys/kernel/kheaders.tar.xz" ]; then
  mount --bind /dev/null "$root/sys/kernel/kheaders.tar.xz"
fi
exec chroot "$root" setpriv --no-new-privs --inh-caps=-all --bounding-set="-all,$caps" -- "$@"
"""

# Polls the agent's /healthz and /readyz on the node's loopback every 20 ms, as the kubelet's
# httpGet probes ask them; prints the wall-clock time each first answered 200.
_POLL = r"""
import json, sys, time, urllib.request
port, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
first = {}
while len(first) < 2 and time.monotonic() < deadline:
    for path in ("/healthz", "/readyz"):
        if path in first:
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as r:
                if r.status == 200:
                    first[path] = time.time()
        except OSError:
            pass
    time.sleep(0.02)
print(json.dumps(first), flush=True)
"""


def image_config(image: str) -> dict[str, Any]:
    """The image's Env and Entrypoint, as a container runtime reads them."""
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{json .Config}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    config: dict[str, Any] = json.loads(out)
    return config


def image_size(image: str) -> int:
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Size}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out)


def unpack(image: str, directory: Path) -> Path:
    """The image's root filesystem as a plain directory (``podman export`` of a container that
    never runs)."""
    directory.mkdir(parents=True)
    ctr = subprocess.run(
        ["podman", "create", "--pull=never", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        export = subprocess.Popen(["podman", "export", ctr], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(directory)], stdin=export.stdout, check=True)
        assert export.stdout is not None
        export.stdout.close()
        if export.wait() != 0:
            raise RuntimeError(f"podman export of {image} failed")
    finally:
        subprocess.run(["podman", "rm", ctr], capture_output=True)
    return directory


def daemonset_container() -> dict[str, Any]:
    ds = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    container: dict[str, Any] = ds["spec"]["template"]["spec"]["containers"][0]
    return container


@dataclass(frozen=True)
class Readiness:
    """Seconds from the agent's start to its first 200 on each endpoint (None: never)."""

    healthz: float | None
    readyz: float | None


class ImageNode:
    """Commands from the unpacked image run in one lab node, as a container of the DaemonSet."""

    def __init__(self, state: LabState, node: str, rootfs: Path, work: Path, image: str) -> None:
        self.state = state
        self.node = node
        self.rootfs = rootfs
        sandbox = state.node_states[node].sandbox
        assert sandbox is not None and sandbox.alive(), f"{node} has no sandbox"
        self.sandbox_pid = sandbox.pid
        container = daemonset_container()
        config = image_config(image)
        self.entrypoint: list[str] = config["Entrypoint"]
        self.caps = ",".join(
            f"+{c.lower()}" for c in container["securityContext"]["capabilities"]["add"]
        )
        env = dict(e.split("=", 1) for e in config["Env"])
        env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
        env.update(
            NODE_NAME=node,
            L2ANNOUNCER_K8S_NAMESPACE=SERVICE_ACCOUNT[0],
            KUBERNETES_SERVICE_HOST=API_LAN_IP,
            KUBERNETES_SERVICE_PORT=str(API_PORT),
        )
        self.env = env
        work.mkdir(parents=True, exist_ok=True)
        self.config_dir = self._config_dir(work / "config")
        self.account_dir = self._account_dir(work / "serviceaccount")
        # Mount points the runtime would make in the container's writable layer.
        for path in (env["L2ANNOUNCER_CONFIG_DIR"], ACCOUNT_DIR, env["L2ANNOUNCER_STATE_DIR"]):
            (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)

    def _config_dir(self, directory: Path) -> Path:
        """The ConfigMap as the kubelet mounts it: one file per key."""
        directory.mkdir()
        data = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())["data"]
        for key, value in data.items():
            (directory / key).write_text(value)
        return directory

    def _account_dir(self, directory: Path) -> Path:
        """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
        directory.mkdir()
        cp = lab.control_plane_of(self.state)
        (directory / "token").write_text(cp.service_account_token(*SERVICE_ACCOUNT, seconds=3600))
        (directory / "ca.crt").write_bytes(self.state.ca_file.read_bytes())
        (directory / "namespace").write_text(SERVICE_ACCOUNT[0])
        return directory

    def argv(self, command: list[str]) -> list[str]:
        return [
            "nsenter",
            f"--target={self.sandbox_pid}",
            "--net",
            "--mount",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            _CONTAINER,
            "container",
            str(self.rootfs),
            str(self.config_dir),
            str(self.account_dir),
            self.caps,
            self.env["L2ANNOUNCER_STATE_DIR"],
            *command,
        ]

    def run(self, command: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    @contextlib.contextmanager
    def agent(
        self, log: Path, timeout: float = 60
    ) -> Iterator[tuple[subprocess.Popen[bytes], Readiness]]:
        """The image's entry point started in the node; yields once /readyz answered 200 (or
        ``timeout`` passed, or it exited) with how long each endpoint took; SIGTERM at the end."""
        poller = _poller(self.state, self.node, timeout)
        start = time.time()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.argv(self.entrypoint), env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            yield proc, _readiness(poller, start, timeout)
        finally:
            stop(proc)


def _poller(state: LabState, node: str, timeout: float) -> subprocess.Popen[str]:
    ns = NETNS_DIR / state.netns_of(node)
    return subprocess.Popen(
        ["nsenter", f"--net={ns}", sys.executable, "-c", _POLL, str(HEALTH_PORT), str(timeout)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _readiness(poller: subprocess.Popen[str], start: float, timeout: float) -> Readiness:
    out, _ = poller.communicate(timeout=timeout + 30)
    first: dict[str, float] = json.loads(out.strip() or "{}")

    def since(path: str) -> float | None:
        return round(first[path] - start, 3) if path in first else None

    return Readiness(since("/healthz"), since("/readyz"))


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as the kubelet stops a container; SIGKILL after its grace period."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def lab_agent_readiness(state: LabState, node: str, timeout: float = 60) -> Readiness:
    """The lab's own agent (from the venv) started in the node, measured the same way."""
    poller = _poller(state, node, timeout)
    start = time.time()
    lab.start_agent(state, node, say=lambda _: None)
    return _readiness(poller, start, timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="localhost/l2announcer:dev")
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    name = f"imgb{secrets.token_hex(2)}"
    work = Path(f"/var/tmp/l2announcer-{name}")
    result: dict[str, Any] = {"image": args.image, "size_bytes": image_size(args.image)}
    try:
        rootfs = unpack(args.image, work / "rootfs")
        with lab.running(name, nodes=1, services=1, say=lambda _: None) as state:
            node = "node1"
            lab.signal_agent(state, node, signal.SIGTERM, wait=15)
            runner = ImageNode(state, node, rootfs, work, args.image)
            image_runs = []
            for i in range(args.starts):
                with runner.agent(work / f"agent-{i}.log") as (_, ready):
                    image_runs.append(ready.__dict__)
            venv_runs = []
            for _ in range(args.starts):
                venv_runs.append(lab_agent_readiness(state, node).__dict__)
                lab.signal_agent(state, node, signal.SIGTERM, wait=15)
            result.update(image_agent=image_runs, venv_agent=venv_runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
