"""``make demo``: bring the lab up and walk through it, running each command as a user would type
it and showing its real output; then kill the holder's agent and measure how long the client
takes to move to the new holder. The lab stays up afterwards.

Run as ``python -m lab.demo`` (root). Uses the seed's fast-failover timers (3s / 1s / 200ms) so
the failover takes seconds; ``l2lab up`` alone uses the reference's 15s / 5s / 2s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from common.leases import lease_name
from lab import lab, netns
from lab.inventory import DEFAULT_NAME, FAST_TIMERS, LabState, node_mac
from lab.netns import LabError

L2LAB = str(Path(sys.executable).parent / "l2lab")
TIMERS = FAST_TIMERS
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def narrate(text: str) -> None:
    print(f"\n{BOLD}## {text}{RESET}", flush=True)


def show(*args: str, name: str, check: bool = True) -> str:
    """Print `$ l2lab ...` and run it, printing its output; returns the output. ``check``: a
    failure stops the demo (`kubectl auth can-i` says no with exit code 1)."""
    print(f"{DIM}${RESET} l2lab {' '.join(_quote(a) for a in args)}", flush=True)
    env = {**os.environ, "L2LAB_NAME": name}
    done = subprocess.run([L2LAB, *args], capture_output=True, text=True, env=env, timeout=300)
    out = done.stdout + done.stderr
    print(out.rstrip("\n"), flush=True)
    if check and done.returncode != 0:
        raise LabError(f"`l2lab {' '.join(args)}` failed (exit {done.returncode})")
    return out


def _quote(arg: str) -> str:
    return f"'{arg}'" if re.search(r"[\s*|&;<>]", arg) else arg


def main() -> int:
    name = os.environ.get("L2LAB_NAME", DEFAULT_NAME)
    missing = lab.missing_requirements()
    if missing:
        print("make demo: this machine lacks what the lab needs:", file=sys.stderr)
        for line in missing:
            print(f"  {line}", file=sys.stderr)
        return 1
    try:
        return _walk(name)
    except LabError as e:
        print(f"\nmake demo: {e}", file=sys.stderr)
        print(f"(the lab is left as it is: `L2LAB_NAME={name} l2lab down` removes it)")
        return 1


def _walk(name: str) -> int:
    if LabState.load(name) is not None or lab.existing_namespaces(name):
        narrate(f"A lab named {name} is already up (from an earlier demo?): taking it down first")
        show("down", name=name)

    narrate(
        "Bringing up the lab: a LAN bridge, a real Kubernetes control plane (etcd, "
        "kube-apiserver, kube-controller-manager; built from pinned Go modules the first time), "
        "3 nodes each running the real l2agent with its eBPF ARP responder, and a client. "
        "Timers: the seed's fast-failover example, lease duration 3s, renew deadline 1s, retry "
        "period 200ms."
    )
    flags = [f"{flag}={value}" for (flag, _), value in zip(lab.TIMER_FLAGS, TIMERS, strict=True)]
    show("up", *flags, name=name)
    state = lab.require(name)
    vip = state.vips()["service-1"]

    narrate(
        "The control plane is the real one. The agents authenticate as the DaemonSet's "
        "ServiceAccount with tokens it minted, so the RBAC in deploy/ is what they get:"
    )
    show("kubectl", "--", "version", name=name)
    can_i = ("kubectl", "--", "auth", "can-i", "--as=system:serviceaccount:kube-system:l2announcer")
    show(*can_i, "update", "leases", "-n", "kube-system", name=name)
    show(*can_i, "delete", "nodes", name=name, check=False)  # "no" exits 1

    narrate("The policy: the seed's policy1. It selects Services labelled color=blue, on eth*.")
    show("kubectl", "--", "get", "ciliuml2announcementpolicy", name=name)
    show("kubectl", "--", "get", "service", "service-1", "--show-labels", name=name)

    narrate("One Lease per Service elects the node that answers ARP for its IPs:")
    out = show("kubectl", "--", "-n", "kube-system", "get", "lease", name=name)
    holder = lab.leases(state).get(lease_name("default", "service-1"), "")
    if holder not in state.node_states:
        raise LabError(f"no holder for service-1 in:\n{out}")
    holder_mac = node_mac(state.node_states[holder].index)

    narrate(f"{holder} holds it. Its agent's l2-announce table has the VIP on eth0:")
    show("exec", holder, "--", "l2dbg", "statedb", "l2-announce", name=name)

    narrate(f"From the client, ARP for {vip}: only {holder} ({holder_mac}) answers, in eBPF:")
    show("exec", "client", "--", "arping", "-c", "3", "-W", "0.2", "-i", "eth0", vip, name=name)
    dump = "bpftool map dump pinned /sys/fs/bpf/tc/globals/cilium_l2_responder_v4"
    show("exec", holder, "--", *dump.split(), name=name)

    narrate(f"HTTP to the VIP reaches {holder} (each node runs a tiny responder on port 80):")
    show("exec", "client", "--", "curl", "-s", f"http://{vip}/", name=name)
    show("exec", "client", "--", "ip", "neigh", "show", vip, name=name)

    narrate(f"Now kill {holder}'s agent (SIGKILL, as a node crash) and watch the client's view.")
    show("agent", "kill", holder, name=name)
    killed = time.monotonic()
    new_mac, moved = _wait_for_move(state, vip, holder_mac, timeout=30.0)
    new_holder = lab.leases(state).get(lease_name("default", "service-1"), "")
    print(
        f"client's neighbour entry for {vip}: {holder_mac} -> {new_mac or '?'} "
        f"after {moved - killed:.2f}s",
        flush=True,
    )

    narrate(f"The lease moved to {new_holder}; the client follows it:")
    show("kubectl", "--", "-n", "kube-system", "get", "lease", name=name)
    show("exec", "client", "--", "arping", "-c", "3", "-W", "0.2", "-i", "eth0", vip, name=name)
    show("exec", "client", "--", "curl", "-s", f"http://{vip}/", name=name)
    print(
        f"\n{BOLD}Measured failover: {moved - killed:.2f}s{RESET} from SIGKILL of {holder}'s "
        f"agent to the client's ARP entry pointing at {new_holder}. The seed's bounds for these "
        "timers: 2s (lease duration - renew deadline) to 4s (lease duration + renew deadline).",
        flush=True,
    )

    narrate(f"Bring {holder}'s agent back (it rejoins as a follower):")
    show("agent", "start", holder, name=name)
    time.sleep(2)
    show("status", name=name)

    prefix = "" if name == DEFAULT_NAME else f"L2LAB_NAME={name} "
    bin_dir = Path(sys.executable).parent
    tips = [
        ("l2lab status", "nodes, leases, announced IPs, health"),
        ("l2lab kubectl -- -n kube-system get lease", "any kubectl command, as the admin"),
        ("l2lab exec node1 -- l2dbg statedb devices", "the runbook's commands, on a node"),
        (f"l2lab exec client -- arping -i eth0 {vip}", "ARP from the client (Ctrl-C stops)"),
        (f"l2lab agent stop {new_holder}", "planned failover (SIGTERM)"),
        (f"l2lab api {new_holder} stall", "cut it off kube-apiserver (then: heal)"),
        (f"l2lab logs {new_holder}", "its agent's log"),
    ]
    width = max(len(prefix + c) for c, _ in tips) + 3
    print(f"\n{BOLD}The lab is still up.{RESET} Explore it (export PATH={bin_dir}:$PATH first):\n")
    for command, what in tips:
        print(f"  {(prefix + command).ljust(width)}{what}")
    print("\nREADME.md has the troubleshooting runbook, every step runnable here.")
    print(f"Take it down with: {prefix}l2lab down", flush=True)
    return 0


def _wait_for_move(state: LabState, vip: str, old_mac: str, timeout: float) -> tuple[str, float]:
    """Poll the client's neighbour entry every 20 ms until it names another MAC."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = netns.ip("neigh", "show", vip, netns=state.client_netns, check=False)
        m = re.search(r"lladdr ([0-9a-f:]{17})", out)
        if m and m.group(1) != old_mac:
            return m.group(1), time.monotonic()
        time.sleep(0.02)
    raise LabError(f"the client's entry for {vip} did not move within {timeout:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
