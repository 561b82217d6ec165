"""Network namespaces, links and processes inside them, with the plain ``ip``/``nsenter`` tools.

The lab shells out instead of using netlink directly so that every step is a command an operator
could type (``ip -n l2lab-lan link add br0 type bridge``), and errors come back in the tools' own
words.

Processes of a node run in its *sandbox*: a long-lived ``sleep`` holding the node's network
namespace and a private mount namespace, like a pod's pause container. The sandbox mounts a fresh
sysfs at ``/sys`` (made inside the node's network namespace, so ``/sys/class/net`` lists the
node's interfaces, not the host's), its own bpffs instance on ``/sys/fs/bpf`` over it, and
bind-mounts the node's state directory at ``/run/l2announcer``, so the agent, ``l2dbg`` and
``bpftool`` inside it use the default paths. That directory plays the agent pod's memory
``emptyDir``: it lives as long as the pod, and :func:`unmount_state` with the directory's removal
is what the kubelet does when the pod is deleted (:func:`mount_state` when one is created). Processes join it with ``nsenter --target <sandbox
pid> --net --mount``. ``ip netns exec`` is not used: it remounts /sys and would hide bpffs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lab.inventory import start_time_of

NETNS_DIR = Path("/run/netns")


class LabError(Exception):
    """Something the lab cannot do; the message is what the user sees."""


def run(
    args: Sequence[str], check: bool = True, timeout: float = 30.0, input: str | None = None
) -> str:
    """Run a tool; on failure raise LabError with the command and its stderr."""
    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, check=False, input=input
        )
    except FileNotFoundError as e:
        raise LabError(f"{args[0]}: not installed") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{' '.join(args)}: no answer within {timeout}s") from e
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    prefix = ["ip"] if netns is None else ["ip", "-n", netns]
    return run([*prefix, *args], check=check)


def sysctl(netns: str, key: str, value: str) -> None:
    # /proc/sys/net is per network namespace; write it from inside the namespace.
    run(["nsenter", f"--net={NETNS_DIR / netns}", "sysctl", "-q", "-w", f"{key}={value}"])


def nft(netns: str, script: str) -> None:
    """Apply an nftables script (``nft -f``) inside the namespace, atomically."""
    run(["nsenter", f"--net={NETNS_DIR / netns}", "nft", "-f", "-"], input=script)


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_netns(name: str) -> None:
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete_netns(name: str) -> None:
    """Delete the namespace's name; kill its processes first (kill_netns_processes)."""
    ip("netns", "delete", name, check=False)


def netns_pids(name: str) -> list[int]:
    out = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_netns_processes(name: str, grace: float = 2.0) -> None:
    """SIGTERM every process in the namespace, then SIGKILL what is left after `grace` s."""
    pids = netns_pids(name)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [p for p in pids if start_time_of(p) is not None]
    for pid in netns_pids(name):
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def link_exists(name: str, netns: str | None = None) -> bool:
    return bool(ip("-o", "link", "show", "dev", name, netns=netns, check=False).strip())


def host_ipv4_addresses() -> list[str]:
    out = ip("-4", "-o", "addr", "show")
    return [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]


# -- sandboxes ----------------------------------------------------------------------------------

SANDBOX_SETUP = """set -e
mount --make-rprivate /
mount -t sysfs sysfs /sys
mount -t bpf bpf /sys/fs/bpf
mkdir -p /sys/fs/bpf/tc/globals
mount --bind "$1" /run/l2announcer
exec sleep infinity
"""


def start_sandbox(netns: str, state_dir: Path, log: Path) -> int:
    """Start a node's sandbox; returns its pid once its mounts are in place."""
    proc = spawn(
        [
            "nsenter",
            f"--net={NETNS_DIR / netns}",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            SANDBOX_SETUP,
            "sandbox",
            str(state_dir),
        ],
        log,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"sandbox of {netns} exited: {log.read_text()[-500:]}")
        try:
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"sleep"):
                return proc.pid
        except OSError:
            pass
        time.sleep(0.02)
    raise LabError(f"sandbox of {netns} did not come up within 10s")


STATE_MOUNT = "/run/l2announcer"


def mount_state(sandbox_pid: int, state_dir: Path) -> None:
    """Bind ``state_dir`` at the sandbox's state path unless something is mounted there."""
    script = f'mountpoint -q {STATE_MOUNT} || mount --bind "$1" {STATE_MOUNT}'
    run([*enter_args(sandbox_pid, ""), "sh", "-c", script, "mount-state", str(state_dir)])


def unmount_state(sandbox_pid: int) -> None:
    script = f"! mountpoint -q {STATE_MOUNT} || umount {STATE_MOUNT}"
    run([*enter_args(sandbox_pid, ""), "sh", "-c", script])


def state_mounted(sandbox_pid: int) -> bool:
    probe = [*enter_args(sandbox_pid, ""), "mountpoint", "-q", STATE_MOUNT]
    return subprocess.run(probe, check=False).returncode == 0


def enter_args(sandbox_pid: int | None, netns: str) -> list[str]:
    """The nsenter prefix that runs a command inside a member of the lab."""
    if sandbox_pid is None:
        return ["nsenter", f"--net={NETNS_DIR / netns}"]
    # --wd keeps the caller's directory (entering a mount namespace would reset it to /).
    return ["nsenter", f"--target={sandbox_pid}", "--net", "--mount", f"--wd={os.getcwd()}"]


def spawn(
    args: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running lab process, detached from the caller's session and terminal."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
