"""The whole lab, end to end: `l2lab up` with the real agent and datapath in network namespaces
and the real control plane (etcd, kube-apiserver, kube-controller-manager), the client's view of
a VIP (arping, its neighbour table, curl), failover, API faults (nftables rules in a node's
namespace), RBAC edits, and `l2lab down` leaving nothing behind (also after a crash).

Each test runs its own lab named ``e2e<4 hex digits>``; a test run first takes down any such lab
left by a crashed run. Timers are the seed's fast example (3s / 1s / 200ms).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import KEYS_BY_NAME
from common.leases import lease_name
from lab import lab, netns
from lab.inventory import FAST_TIMERS, REFERENCE_TIMERS, RUN_DIR, LabState, lab_dir, node_mac
from tests.e2e.lab_extras import (
    L2LAB,
    add_eth1,
    arpwatch,
    delete_eth1,
    disruption_args,
    holder_of,
    l2lab,
    neighbour,
    responder_keys,
    summary,
    until,
)
from tests.kube import pinned_kubernetes_version

FAST = FAST_TIMERS
REFERENCE = REFERENCE_TIMERS  # the reference's default timers
E2E_NAME = re.compile(r"^e2e[0-9a-f]{4}$")

pytestmark = pytest.mark.timeout(120)


def _owner_file(name: str) -> Path:
    return RUN_DIR / f"{name}.e2e-owner"


def _owned_by_a_live_run(name: str) -> bool:
    """Whether another test session that is still running made this lab."""
    try:
        pid = int(_owner_file(name).read_text())
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="session", autouse=True)
def _clean_crashed_runs() -> None:
    # Labs of a crashed run are taken down; those of a run still going are left alone.
    names = {p.name for p in RUN_DIR.glob("e2e*") if p.is_dir()} if RUN_DIR.exists() else set()
    names |= {ns.split("-")[0] for ns in netns.list_netns() if ns.startswith("e2e")}
    for name in sorted(n for n in names if E2E_NAME.match(n)):
        if not _owned_by_a_live_run(name):
            lab.down(name, say=lambda _: None)
            _owner_file(name).unlink(missing_ok=True)


def new_name() -> str:
    return f"e2e{secrets.token_hex(2)}"


@pytest.fixture
def name() -> Iterator[str]:
    lab_name = new_name()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    _owner_file(lab_name).write_text(str(os.getpid()))
    try:
        yield lab_name
    finally:
        # Shown by pytest only when the test failed: what the lab looked like, and its logs.
        state = LabState.load(lab_name)
        if state is not None:
            print(l2lab(lab_name, "status", check=False))
            for node in state.node_states:
                print(f"--- {node} agent log (tail)\n{lab.tail(state.agent_log(node), 30)}")
        l2lab(lab_name, "down", check=False)
        _owner_file(lab_name).unlink(missing_ok=True)


def up(
    name: str,
    nodes: int = 3,
    services: int = 1,
    timers: tuple[str, str, str] = FAST,
    balance: bool = True,
) -> LabState:
    lease, renew, retry = timers
    flags = ["--lease-duration", lease, "--renew-deadline", renew, "--retry-period", retry]
    flags.append("--balance" if balance else "--no-balance")
    l2lab(name, "up", "--nodes", str(nodes), "--services", str(services), *flags)
    state = LabState.load(name)
    assert state is not None and state.phase == "up"
    return state


def arping(state: LabState, ip: str, count: int = 3) -> list[str]:
    """The MACs that answered, one per answer, for `count` requests from the client."""
    out = lab.run_in(state, "client", ["arping", "-c", str(count), "-W", "0.2", "-i", "eth0", ip])
    return re.findall(r"bytes from ([0-9a-f:]{17}) ", out)


def curl(state: LabState, ip: str) -> str:
    return lab.run_in(state, "client", ["curl", "-s", "-m", "2", f"http://{ip}/"]).strip()


def responder_map(state: LabState, node: str) -> list[dict[str, Any]]:
    """The node's pinned l2-responder map, as bpftool prints it (BTF-formatted keys/values)."""
    out = lab.run_in(
        state,
        node,
        ["bpftool", "map", "dump", "pinned", "/sys/fs/bpf/tc/globals/cilium_l2_responder_v4"],
    )
    entries: list[dict[str, Any]] = json.loads(out)
    return entries


def ip4_key(vip: str) -> int:
    # The key's ip4 holds the address in network byte order; bpftool prints it as a host integer.
    return int.from_bytes(socket.inet_aton(vip), sys.byteorder)


def responses_sent(state: LabState, node: str, vip: str | None = None) -> int:
    """ARP replies the node's datapath sent: for ``vip`` only, or for every VIP it holds.

    Counting per VIP matters: a node that holds another Service answers for that VIP (arping,
    the client kernel's own neighbour probes) while we look at this one.
    """
    return sum(
        int(e["value"]["responses_sent"])
        for e in responder_map(state, node)
        if vip is None or int(e["key"]["ip4"]) == ip4_key(vip)
    )


def test_up_announces_every_service_from_its_holder_only(name: str) -> None:
    state = up(name, nodes=3, services=2)
    for service, vip in state.vips().items():
        holder = holder_of(state, service)
        assert holder in state.node_states, lab.leases(state)
        holder_mac = node_mac(state.node_states[holder].index)

        # kubectl shows the holder; its l2dbg shows the VIP on eth0.
        leases = l2lab(name, "kubectl", "--", "-n", "kube-system", "get", "lease")
        assert re.search(rf"{lease_name('default', service)}\s+{holder}\s", leases), leases
        table = l2lab(name, "exec", holder, "--", "l2dbg", "statedb", "l2-announce")
        assert re.search(rf"^{re.escape(vip)}\s+eth0\s*$", table, re.M), table

        # Only the holder answers, once per request, and its counter grows.
        before = responses_sent(state, holder, vip)
        answers = arping(state, vip, count=3)
        assert answers == [holder_mac] * 3
        assert responses_sent(state, holder, vip) >= before + 3
        for other in state.node_states:
            if other != holder:
                assert responses_sent(state, other, vip) == 0, other

        # Traffic for the VIP reaches the holder.
        assert curl(state, vip) == f"{holder}: hello from {vip}"
        assert neighbour(state, vip) == holder_mac

    status = l2lab(name, "status")
    assert re.search(r"^node1\s+198\.51\.100\.11\s+pid \d+", status, re.M), status


def test_the_lab_runs_the_real_control_plane_and_nodes_see_their_own_sys(name: str) -> None:
    """Issue 12's acceptance in the lab: the real server's version and readiness through the
    built kubectl, deploy/'s RBAC as the agents' ServiceAccount sees it, a node's own /sys, and
    the API faults as a node's own connections see them."""
    state = up(name, nodes=1, services=0)
    version = l2lab(name, "kubectl", "--", "version")
    assert f"Server Version: {pinned_kubernetes_version()}" in version, version
    assert l2lab(name, "kubectl", "--", "get", "--raw", "/readyz").strip() == "ok"
    account = "--as=system:serviceaccount:kube-system:l2announcer"
    can_i = ("kubectl", "--", "auth", "can-i", account)
    assert l2lab(name, *can_i, "update", "leases", "-n", "kube-system").strip() == "yes"
    # (kubectl adds a warning that nodes are not namespaced, after its answer)
    assert l2lab(name, *can_i, "delete", "nodes", check=False).splitlines()[0] == "no"
    leases = l2lab(name, "kubectl", "--", "get", "lease", "-n", "kube-system")
    assert re.match(r"NAME\s+HOLDER\s+AGE", leases), leases  # the server's own table

    # The node's /sys is its own: eth0 there is the node's, with the node's MAC.
    sys_mac = l2lab(name, "exec", "node1", "--", "cat", "/sys/class/net/eth0/address").strip()
    link = l2lab(name, "exec", "node1", "--", "ip", "link", "show", "eth0")
    assert re.search(rf"link/ether {re.escape(sys_mac)} ", link), (sys_mac, link)
    assert sys_mac == node_mac(1)

    # The agent answers its probes on the node's loopback, as the kubelet asks them.
    def probe(path: str) -> str:
        url = f"127.0.0.1:{KEYS_BY_NAME['agent-health-port'].default}{path}"
        return l2lab(name, "exec", "node1", "--", "curl", "-s", "-m", "2", url, check=False)

    until(lambda: probe("/readyz") == "ok\n", "node1's agent ready")
    assert probe("/healthz") == "ok\n"

    # The faults, as node1's own connections to kube-apiserver (over its management link, as its
    # agent's) see them (curl exit codes: 7 could not connect, 28 timed out); the host and other
    # members are not affected.
    def readyz() -> tuple[int, str]:
        args, env = lab.exec_args(state, "node1", [
            "curl", "-sk", "-m", "2", f"{state.mgmt_url}/readyz"])  # fmt: skip
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
        return done.returncode, done.stdout

    assert readyz() == (0, "ok")
    l2lab(name, "api", "node1", "refuse")
    assert readyz()[0] == 7
    assert l2lab(name, "kubectl", "--", "get", "--raw", "/readyz").strip() == "ok"
    assert "API refuse (l2lab api node1 heal)" in l2lab(name, "status")
    l2lab(name, "api", "node1", "stall")  # replaces the refusal
    assert readyz()[0] == 28
    l2lab(name, "api", "all", "heal")
    assert readyz() == (0, "ok")
    assert "l2lab api node1 heal" not in l2lab(name, "status")


def test_killed_holder_client_moves_to_the_new_holder(name: str) -> None:
    """The client's neighbour entry follows the lease to the new holder (its gratuitous ARP).
    How fast is bench/client_view.py's (target lease duration + 2 x retry period)."""
    state = up(name, nodes=3, services=1)
    vip = state.vips()["service-1"]
    old = holder_of(state, "service-1")
    assert curl(state, vip).startswith(f"{old}:")
    assert neighbour(state, vip) == node_mac(state.node_states[old].index)

    l2lab(name, "agent", "kill", old)
    killed = time.monotonic()
    seen = neighbour(state, vip)
    while seen == node_mac(state.node_states[old].index) or not seen:
        elapsed = time.monotonic() - killed
        assert elapsed < 30, f"client still on {old} after {elapsed:.2f}s"
        time.sleep(0.02)
        seen = neighbour(state, vip)
    print(f"client moved from {old} after {time.monotonic() - killed:.2f}s")

    new = holder_of(state, "service-1")
    assert new in state.node_states and new != old
    assert seen == node_mac(state.node_states[new].index)
    assert curl(state, vip) == f"{new}: hello from {vip}"
    assert arping(state, vip, count=2) == [seen] * 2


def _host_footprint(name: str) -> dict[str, object]:
    """What a lab named `name` could leave on the host."""
    procs = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(lab_dir(name)) in cmd or f"{name}-" in cmd:
            procs.append(cmd)
    mounts = [m for m in Path("/proc/self/mountinfo").read_text().splitlines() if name in m]
    return {
        "namespaces": [n for n in netns.list_netns() if n.startswith(f"{name}-")],
        "links": netns.link_exists(f"{name}-api"),
        "dir": lab_dir(name).exists(),
        "processes": procs,
        "mounts": mounts,
        # Other test suites pin into the host's bpffs concurrently: look only for this lab's.
        "host pins": [
            str(p) for p in Path("/sys/fs/bpf").rglob("*") if name in str(p) or "l2lab" in str(p)
        ],
    }


def _nothing_left(name: str, pins_before: object) -> None:
    left = _host_footprint(name)
    assert left["host pins"] == pins_before == []
    assert left["namespaces"] == []
    assert left["links"] is False
    assert left["dir"] is False
    assert left["processes"] == []
    assert left["mounts"] == []


def test_down_leaves_nothing(name: str) -> None:
    pins_before = _host_footprint(name)["host pins"]
    state = up(name, nodes=2, services=1)
    pids = [p.pid for ns in state.node_states.values() for p in (ns.agent, ns.sandbox) if p]
    out = l2lab(name, "down")
    assert f"removed namespace {name}-node1" in out
    _nothing_left(name, pins_before)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    # A second down finds nothing to do.
    assert "nothing to remove" in l2lab(name, "down")


def test_down_cleans_up_after_a_crashed_up(name: str) -> None:
    pins_before = _host_footprint(name)["host pins"]
    up_proc = subprocess.Popen(
        [L2LAB, "--name", name, "up", "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Kill it once the agents are being started: namespaces, server and sandboxes exist.
    assert up_proc.stdout is not None
    for line in up_proc.stdout:
        if "started the agent of node1" in line:
            break
    up_proc.send_signal(signal.SIGKILL)
    up_proc.wait()
    assert _host_footprint(name)["namespaces"], "the crashed up left nothing to clean"
    l2lab(name, "down")
    _nothing_left(name, pins_before)


# -- the client's view over time: arping every 20 ms during a disruption -------------------------


@pytest.mark.parametrize(
    "disruption",
    [
        "agent kill",  # unplanned: SIGKILL
        "agent stop",  # planned: SIGTERM releases the lease
        "api stall",  # packets with kube-apiserver dropped both ways: requests and watches hang
        "api refuse",  # TCP resets: every request fails at once
    ],
    ids=["sigkill", "sigterm", "api-stall", "api-refuse"],
)
def test_client_sees_one_answer_per_request_then_the_new_holder(name: str, disruption: str) -> None:
    """Through each disruption of the holder, no request is answered twice and the answers
    move from the old holder to the new one. The outage's length is bench/client_view.py's
    (targets 0.5 s for SIGTERM, lease duration + renew deadline for the others)."""
    state = up(name, nodes=3, services=1)
    vip = state.vips()["service-1"]
    old = holder_of(state, "service-1")
    # Long enough to see the new holder answer with room to spare (the fast timers' failover
    # is 3-4 s); the time it took is printed, not judged.
    watcher = arpwatch(state, vip, duration=12.0)
    time.sleep(1.0)
    action, what = disruption.split()
    l2lab(name, *disruption_args(action, what, old))
    seen = summary(watcher)
    print(f"{disruption}: {seen}")
    assert seen["double"] == 0, seen
    old_mac = node_mac(state.node_states[old].index)
    new = holder_of(state, "service-1")
    assert new not in ("", old)
    assert seen["macs"] == [old_mac, node_mac(state.node_states[new].index)], seen
    if action == "api":
        l2lab(name, "api", old, "heal")


def test_holder_restarted_within_the_renew_deadline_keeps_the_vip(name: str) -> None:
    # The reference renew deadline (5s) leaves the restarted agent time to start (compile the
    # datapath, list and watch) and renew its own lease before the datapath goes silent.
    state = up(name, nodes=2, timers=REFERENCE)
    vip = state.vips()["service-1"]
    old = holder_of(state, "service-1")
    watcher = arpwatch(state, vip, duration=8.0)
    time.sleep(1.0)
    l2lab(name, "agent", "kill", old)
    l2lab(name, "agent", "start", old)
    seen = summary(watcher)
    print(f"restart: {seen}")
    assert seen["double"] == 0, seen
    assert seen["macs"] == [node_mac(state.node_states[old].index)], seen
    assert seen["answered"] == seen["requests"], seen
    assert holder_of(state, "service-1") == old


def test_a_service_created_with_kubectl_is_announced_once_selected_and_addressed(name: str) -> None:
    """docs/lab.md, "Your own Services": kubectl create (a protobuf body), label, status patch."""
    state = up(name, nodes=2)
    vip = "198.51.100.99"
    l2lab(name, "kubectl", "--", "create", "service", "loadbalancer", "web", "--tcp=80")
    l2lab(name, "kubectl", "--", "label", "svc", "web", "color=blue")
    ingress = json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": vip}]}}})
    l2lab(name, "kubectl", "--", "patch", "svc", "web", "--subresource=status", "--type=merge",
          "-p", ingress)  # fmt: skip
    deadline = time.monotonic() + 15
    while not (holder := holder_of(state, "web")):
        assert time.monotonic() < deadline, lab.leases(state)
        time.sleep(0.1)
    answers: list[str] = []
    while len(answers) < 2:
        assert time.monotonic() < deadline, "the new VIP is not answered"
        answers = arping(state, vip, count=2)
    assert answers == [node_mac(state.node_states[holder].index)] * 2


# -- policy -------------------------------------------------------------------------------------


BAD_POLICY = """\
apiVersion: cilium.io/v2alpha1
kind: CiliumL2AnnouncementPolicy
metadata:
  name: policy1
spec:
  serviceSelector:
    matchExpressions:
      - key: something
        operator: NotIn
        values: []
  interfaces:
    - ^eth[0-9]+
  loadBalancerIPs: true
"""


def test_bad_policy_shows_its_condition_and_relabel_withdraws(name: str, tmp_path: Path) -> None:
    state = up(name, nodes=2, services=2)
    vip = state.vips()["service-1"]
    holder = holder_of(state, "service-1")

    # A Service relabelled out of the policy is withdrawn from the table and the map (how fast
    # is bench/client_view.py's, target 1 s).
    l2lab(name, "kubectl", "--", "label", "service", "service-1", "color=red", "--overwrite")
    took = until(
        lambda: (
            not (
                vip in lab.node_view(state, holder).announced
                or responses_entries(state, holder, vip)
            )
        ),
        "service-1 withdrawn",
    )
    print(f"service-1 withdrawn {took:.3f}s after the relabel")
    assert arping(state, vip, count=2) == []
    assert (
        state.vips()["service-2"] in lab.node_view(state, holder_of(state, "service-2")).announced
    )

    # The seed's bad policy: its condition shows in `kubectl describe l2announcement`.
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_POLICY)
    l2lab(name, "kubectl", "--", "apply", "-f", str(bad))
    deadline = time.monotonic() + 10
    while True:
        described = l2lab(name, "kubectl", "--", "describe", "l2announcement")
        if "io.cilium/bad-service-selector" in described:
            break
        assert time.monotonic() < deadline, described
        time.sleep(0.2)
    assert "for 'in', 'notin' operators, values set can't be empty" in described


def responses_entries(state: LabState, node: str, vip: str) -> bool:
    return any(int(e["key"]["ip4"]) == ip4_key(vip) for e in responder_map(state, node))


def filter_program_id(state: LabState, node: str) -> int:
    """The id of the BPF program in our tc filter on the node's eth0 (0 when none)."""
    out = lab.run_in(state, node, ["tc", "filter", "show", "dev", "eth0", "ingress"])
    m = re.search(r"l2announcer_l2_responder.* id (\d+)", out)
    return int(m.group(1)) if m else 0


def test_agent_restart_loses_no_request_keeps_counters_and_sends_no_garp(name: str) -> None:
    """Issue 4: the holder's agent killed and started again with nothing else changed: an ARP
    request every 10 ms is always answered (the adopted program keeps answering from the pinned
    map while the old liveness stamp is valid, and the new agent swaps its own program in
    atomically), the counter keeps counting, and no gratuitous ARP goes out again for a key
    that never left the map."""
    state = up(name, nodes=2, timers=REFERENCE)
    vip = state.vips()["service-1"]
    holder = holder_of(state, "service-1")
    time.sleep(1.5)  # the take-over burst of gratuitous ARPs (0, 0.5, 1 s) is over
    before = responses_sent(state, holder)
    old_program = filter_program_id(state, holder)
    assert old_program, "no l2-responder filter on the holder's eth0"
    # Gratuitous ARPs are replies to broadcast; the answers to our probes are unicast.
    args, env = lab.exec_args(
        state, "client",
        ["tcpdump", "-l", "-n", "-i", "eth0", "-c", "100", "ether dst ff:ff:ff:ff:ff:ff and arp[6:2] = 2"],
    )  # fmt: skip
    garps = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    watcher = arpwatch(state, vip, duration=8, interval=0.01, summary_only=False)
    time.sleep(1.0)
    l2lab(name, "agent", "kill", holder)
    l2lab(name, "agent", "start", holder)
    out, _ = watcher.communicate(timeout=30)
    garps.send_signal(signal.SIGINT)
    garp_lines, _ = garps.communicate(timeout=10)
    probes = [json.loads(line) for line in out.splitlines() if line.startswith('{"seq"')]
    summary_line = json.loads(out.strip().splitlines()[-1])["summary"]
    unanswered = [p["seq"] for p in probes if not p["answers"]]
    assert len(probes) >= 500, summary_line
    assert unanswered == [], (
        f"{len(unanswered)} of {len(probes)} requests unanswered: {summary_line}"
    )
    assert summary_line["double"] == 0 and summary_line["macs"] == [
        node_mac(state.node_states[holder].index)
    ]
    assert holder_of(state, "service-1") == holder
    after = responses_sent(state, holder)
    assert after >= before + len(probes), f"counter went from {before} to {after}"
    # The restarted agent runs its own program (after an upgrade, the new version), not the
    # one it adopted.
    assert filter_program_id(state, holder) not in (0, old_program)
    assert [line for line in garp_lines.splitlines() if vip in line] == [], garp_lines


def _metric(lab_state: LabState, node: str, name: str, **labels: str) -> float:
    """Sum of the series ``name`` with these labels on ``node``'s metrics endpoint."""
    from lab.lab import METRICS_PORT

    text = lab.run_in(
        lab_state, node, ["curl", "-s", "-m", "2", f"http://127.0.0.1:{METRICS_PORT}/metrics"]
    )
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def test_metrics_move_with_arping_and_failover_and_the_service_names_its_holder(name: str) -> None:
    """Issue 7: each agent's metrics endpoint, and the Service's events and its Lease."""
    state = up(name, nodes=2)
    vip = state.vips()["service-1"]
    old = holder_of(state, "service-1")
    other = next(n for n in state.node_states if n != old)
    sent_before = _metric(state, old, "l2announcer_arp_responses_sent_total", ip=vip)
    assert len(arping(state, vip, count=5)) == 5
    assert _metric(state, old, "l2announcer_arp_responses_sent_total", ip=vip) >= sent_before + 5
    assert _metric(state, old, "l2announcer_leases", state="held") == 1
    assert _metric(state, other, "l2announcer_leases", state="followed") == 1
    assert _metric(state, old, "l2announcer_announced", ip=vip, service="service-1") == 1
    assert _metric(state, old, "l2announcer_k8s_requests_total") > 0
    describe = ("kubectl", "--", "describe", "svc", "service-1")
    deadline = time.monotonic() + 10
    while f"from node {old}" not in l2lab(name, *describe) and time.monotonic() < deadline:
        time.sleep(0.2)
    l2lab(name, "agent", "kill", old)
    deadline = time.monotonic() + 15
    while holder_of(state, "service-1") != other and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holder_of(state, "service-1") == other
    while _metric(state, other, "l2announcer_gratuitous_arp_sent_total", ip=vip) < 1:
        assert time.monotonic() < deadline, "no gratuitous ARP counted on the new holder"
        time.sleep(0.2)
    assert _metric(state, other, "l2announcer_lease_transitions_total", event="acquired") == 1
    assert _metric(state, other, "l2announcer_takeover_latency_seconds_count") == 1
    while f"from node {other}" not in l2lab(name, *describe) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = l2lab(name, *describe)
    lease = "kube-system/cilium-l2announce-default-service-1"
    both = f"{vip} on eth0, {state.vips6()['service-1']} on eth0"  # dual-stack: one lease
    for node in (old, other):  # one event from each holder; the Service itself is not written
        assert f"announcing {both} from node {node} (lease {lease})" in described
    assert "l2announcer.io/" not in described
    assert holder_of(state, "service-1") == other


def test_an_interface_added_deleted_and_readded_reaches_the_map(name: str) -> None:
    """Issue 4: interface changes update the devices table and the BPF map (how fast is
    bench/client_view.py's, target 1 s)."""
    state = up(name, nodes=2)
    vip = state.vips()["service-1"]
    holder = holder_of(state, "service-1")
    first = add_eth1(state, holder)
    took = until(lambda: (vip, "eth1", first) in responder_keys(state, holder), "eth1 added")
    print(f"eth1 added: key in the map after {took:.3f}s")
    devices = lab.run_in(state, holder, ["l2dbg", "statedb", "devices"])
    assert any(line.split()[:3] == ["eth1", str(first), "true"] for line in devices.splitlines())

    delete_eth1(state, holder)
    took = until(lambda: all(k[2] != first for k in responder_keys(state, holder)), "eth1 deleted")
    print(f"eth1 deleted: key gone after {took:.3f}s")
    assert any(k[:2] == (vip, "eth0") for k in responder_keys(state, holder)), "eth0 keeps it"

    second = add_eth1(state, holder)
    assert second != first
    took = until(lambda: (vip, "eth1", second) in responder_keys(state, holder), "eth1 re-added")
    print(f"eth1 re-added as ifindex {second}: key in the map after {took:.3f}s")


def test_missing_lease_rbac_logs_the_seeds_line_and_recovers_without_restart(name: str) -> None:
    """Issues 5 and 7: with deploy/rolebinding.yaml removed, an agent's read of its lease is
    refused and logged as the seed shows; re-applying the file recovers without a restart."""
    state = up(name, nodes=2)
    vip = state.vips()["service-1"]
    holder = holder_of(state, "service-1")
    lease = lease_name("default", "service-1")
    l2lab(name, "kubectl", "--", "-n", "kube-system", "delete", "rolebinding", "l2announcer")
    l2lab(name, "agent", "restart", holder)  # its first read of the lease is now refused
    seed_line = (
        f'level=error msg="error retrieving resource lock kube-system/{lease}: '
        f'leases.coordination.k8s.io \\"{lease}\\" is forbidden: User '
        '\\"system:serviceaccount:kube-system:l2announcer\\" cannot get resource \\"leases\\" '
        'in API group \\"coordination.k8s.io\\" in the namespace \\"kube-system\\"" subsys=klog'
    )
    deadline = time.monotonic() + 20
    while seed_line not in state.agent_log(holder).read_text():
        assert time.monotonic() < deadline, lab.tail(state.agent_log(holder), 20)
        time.sleep(0.2)
    pids = {n: s.agent.pid for n, s in LabState.load(name).node_states.items() if s.agent}  # type: ignore[union-attr]
    l2lab(name, "kubectl", "--", "apply", "-f", str(Path(lab.REPO) / "deploy" / "rolebinding.yaml"))
    deadline = time.monotonic() + 45
    # Announced: the row is Done, i.e. its key is in the BPF map (a row still pending is in the
    # table but not yet answered).
    while not any(vip in lab.node_view(state, n).announced for n in pids):
        assert time.monotonic() < deadline, "not announced again after the RBAC fix"
        time.sleep(0.2)
    after = {n: s.agent.pid for n, s in LabState.load(name).node_states.items() if s.agent}  # type: ignore[union-attr]
    assert after == pids, "recovered without restarting any agent"
    # Answered again, by the holder alone (one request may be lost to a busy client: retried).
    holder_mac = node_mac(state.node_states[holder_of(state, "service-1")].index)
    answers: list[str] = []
    while len(answers) < 2:
        assert time.monotonic() < deadline, f"the VIP is not answered again: {answers}"
        answers = arping(state, vip, count=2)
    assert answers == [holder_mac] * 2
