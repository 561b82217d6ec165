"""The agent image run the way deploy/daemonset.yaml runs it, against a real control plane.

Run by tests/e2e/test_image.py inside a throwaway network namespace holding a veth pair
(``l2a`` announced, ``l2b`` the client side), as
``nsenter --net=/run/netns/<ns> python -m tests.e2e.image_agent <workdir> <image>``:

1. etcd, kube-apiserver and kube-controller-manager (lab/controlplane.py) on 127.0.0.1 of that
   namespace, with the CRD and the RBAC objects of deploy/ applied by the built kubectl, a Node,
   a LoadBalancer Service and a policy;
2. the image under ``buildah run --isolation chroot`` with the DaemonSet's env, its ConfigMap as
   the config directory, the ServiceAccount's in-cluster token (minted by kube-apiserver, as the
   kubelet's projected volume holds it), its mounts, and only its capabilities (seccomp
   unconfined, as in the DaemonSet);
3. what an operator would check: the Lease holder, ``l2agent --health-probe``,
   ``l2dbg statedb l2-announce``, arping from the other end, the responder counter.

Prints one JSON object with the results on the last line of stdout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from lab.controlplane import ControlPlane, binaries

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NODE = "node1"
VIP = "192.0.2.100"
LEASE = "cilium-l2announce-default-service-red"
# buildah run's default capabilities, dropped one by one (its --cap-drop=all also drops adds).
BUILDAH_DEFAULT_CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "SETFCAP",
    "NET_RAW",
    "MKNOD",
    "AUDIT_WRITE",
]


def _daemonset_container() -> dict[str, Any]:
    ds = yaml.safe_load((DEPLOY / "daemonset.yaml").read_text())
    c: dict[str, Any] = ds["spec"]["template"]["spec"]["containers"][0]
    return c


def _seed(work: Path, cp: ControlPlane) -> client.ApiClient:
    cp.kubectl("apply", "-f", str(DEPLOY / "crds"))
    cp.kubectl("wait", "--for=condition=established", "--timeout=60s", "-f", str(DEPLOY / "crds"))
    for kind in ("serviceaccount", "clusterrole", "clusterrolebinding", "role", "rolebinding"):
        cp.kubectl("apply", "-f", str(DEPLOY / f"{kind}.yaml"))
    policy = {
        "apiVersion": "cilium.io/v2alpha1",
        "kind": "CiliumL2AnnouncementPolicy",
        "metadata": {"name": "policy1"},
        "spec": {"loadBalancerIPs": True, "interfaces": ["^l2a$"]},
    }
    (work / "policy.yaml").write_text(yaml.safe_dump(policy))
    cp.kubectl("apply", "-f", str(work / "policy.yaml"))

    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cp.admin_kubeconfig), client_configuration=configuration
    )
    api = client.ApiClient(configuration)
    core = client.CoreV1Api(api)
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=NODE)))
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="service-red"),
        spec=client.V1ServiceSpec(type="LoadBalancer", ports=[client.V1ServicePort(port=80)]),
    )
    core.create_namespaced_service("default", service)
    status = {"status": {"loadBalancer": {"ingress": [{"ip": VIP}]}}}
    core.patch_namespaced_service_status("service-red", "default", status)
    return api


def _config_dir(work: Path) -> Path:
    """The ConfigMap as the kubelet mounts it, with devices set to the test's interface (the
    veth would not be detected: it carries no default route)."""
    directory = work / "config"
    directory.mkdir()
    data = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())["data"]
    data["devices"] = "l2a"
    for key, value in data.items():
        (directory / key).write_text(value)
    return directory


def _holder(api: client.ApiClient) -> str:
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, "kube-system")
    except client.ApiException:
        return ""
    return (lease.spec.holder_identity if lease.spec else "") or ""


def _service_account_volume(directory: Path, cp: ControlPlane, namespace: str, name: str) -> None:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount: a token minted
    by kube-apiserver, the cluster's CA and the namespace."""
    directory.mkdir()
    (directory / "token").write_text(cp.service_account_token(namespace, name, seconds=3600))
    (directory / "ca.crt").write_bytes(cp.pki.ca_cert.read_bytes())
    (directory / "namespace").write_text(namespace)


def main(work: Path, image: str) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    # This process runs in the test's namespace: the control plane's loopback is that namespace's.
    cp = ControlPlane(
        work / "controlplane", binaries(say=lambda line: print(line, file=sys.stderr))
    )
    cp.start()
    pin = Path(f"/sys/fs/bpf/l2announcer-image-agent-{os.getpid()}")
    ctr = ""
    agent: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {}
    try:
        api = _seed(work, cp)
        account = work / "serviceaccount"
        _service_account_volume(account, cp, "kube-system", "l2announcer")
        state = work / "state"
        state.mkdir()
        pin.mkdir()

        c = _daemonset_container()
        caps = c["securityContext"]["capabilities"]["add"]
        env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
        env.update(
            NODE_NAME=NODE,
            L2ANNOUNCER_K8S_NAMESPACE="kube-system",
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=str(cp.ports.apiserver),
            # buildah's chroot isolation mounts /sys read-only over a bind under it.
            L2ANNOUNCER_BPF_ROOT=f"/bpffs/{pin.name}/tc/globals",
        )
        ctr = subprocess.run(
            ["buildah", "from", "--pull-never", "--security-opt", "seccomp=unconfined", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        run = [
            "buildah",
            "run",
            "--isolation",
            "chroot",
            *(
                a
                for cap in BUILDAH_DEFAULT_CAPS
                if cap not in caps
                for a in ("--cap-drop", f"CAP_{cap}")
            ),
            *(a for cap in caps for a in ("--cap-add", f"CAP_{cap}")),
            *(a for k, v in env.items() for a in ("-e", f"{k}={v}")),
            # /run/secrets, not /var/run/secrets: buildah resolves the /var/run link differently.
            "-v",
            f"{account}:/run/secrets/kubernetes.io/serviceaccount:ro",
            "-v",
            f"{_config_dir(work)}:{env['L2ANNOUNCER_CONFIG_DIR']}:ro",
            "-v",
            f"{state}:{env['L2ANNOUNCER_STATE_DIR']}",
            "-v",
            "/sys/fs/bpf:/bpffs",
            "-v",
            "/lib/modules:/lib/modules:ro",
            "-v",
            "/usr/src:/usr/src:ro",
            ctr,
            "--",
        ]
        with (work / "agent.log").open("wb") as log:
            agent = subprocess.Popen([*run, "l2agent"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not _holder(api) and time.monotonic() < deadline and agent.poll() is None:
            time.sleep(0.5)
        result["holder"] = _holder(api)
        time.sleep(2)  # the entry reaches the map right after the lease

        def in_image(*cmd: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*run, *cmd], capture_output=True, text=True, timeout=60)

        result["health_probe_rc"] = in_image("l2agent", "--health-probe").returncode
        result["l2_announce"] = in_image("l2dbg", "statedb", "l2-announce").stdout
        arping = subprocess.run(
            ["arping", "-c", "2", "-w", "5", "-I", "l2b", VIP],
            capture_output=True,
            text=True,
            timeout=30,
        )
        result["arping_rc"] = arping.returncode
        result["arping"] = arping.stdout
        dump = subprocess.run(
            ["bpftool", "map", "dump", "pinned", f"{pin}/tc/globals/cilium_l2_responder_v4"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        entries = json.loads(dump.stdout or "[]")
        result["responses_sent"] = sum(e["value"]["responses_sent"] for e in entries)
        api.close()  # type: ignore[no-untyped-call]
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(15)
        if ctr:
            subprocess.run(["buildah", "rm", ctr], capture_output=True)
        cp.stop()
        subprocess.run(["rm", "-rf", str(pin)])
        log_path = work / "agent.log"
        result["agent_log_tail"] = log_path.read_text()[-3000:] if log_path.exists() else ""
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2])))
