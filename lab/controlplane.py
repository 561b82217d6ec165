"""A real Kubernetes control plane for the lab and the tests: etcd, kube-apiserver and
kube-controller-manager, built from pinned Go modules (``lab/go/``,
``scripts/controlplane-build.sh``) and run as this user's child processes.

kube-apiserver runs with TLS, client-certificate authentication, ServiceAccount tokens, RBAC and
API Priority and Fairness, as on a cluster; kube-controller-manager runs the controllers whose
absence a test would notice (EndpointSlices, namespace deletion, garbage collection, the
``default`` ServiceAccount of each namespace). Data lives in the given directory (the lab's is on
tmpfs), etcd skips fsync.

``ControlPlane.start`` returns once ``/readyz`` says ok and the ``default`` namespace and the
``kubernetes`` Service exist (both can lag ``/readyz``). Processes are started in their own
sessions and recorded with their start time (``lab.inventory.Proc``), so ``stop`` (or ``l2lab down``,
from another process) signals exactly the processes it started, never a reused pid.

With ``netns``, every process runs inside that network namespace (the lab's LAN), where the
fixed ports cannot collide with anything on the host.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.inventory import Proc, proc_of
from lab.pki import Pki

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "scripts" / "controlplane-build.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
# kube-controller-manager's controllers that a test or an operator would miss (names from
# Kubernetes' cmd/kube-controller-manager/names).
CONTROLLERS = (
    "endpointslice-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
)
# ClusterIPs are only allocated, never configured anywhere: a documentation range all the same.
SERVICE_CIDR = "192.0.2.0/24"


class ControlPlaneError(Exception):
    """The control plane cannot be built or started; the message says why."""


def binaries(say: Callable[[str], None] | None = None) -> Path:
    """The directory holding etcd, kube-apiserver, kube-controller-manager, kubectl and helm:
    ``L2ANNOUNCER_CONTROLPLANE_BIN`` if set, else the build script's cache (built on first use,
    which takes minutes; later calls take about a second)."""
    preset = os.environ.get("L2ANNOUNCER_CONTROLPLANE_BIN")
    if preset:
        return Path(preset)
    proc = subprocess.Popen(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None and proc.stdout is not None
    said = []
    for line in proc.stderr:  # the build's progress, as it happens
        said.append(line.rstrip())
        if say is not None:
            say(said[-1])
    out = proc.stdout.read()
    if proc.wait() != 0 or not out.strip():
        raise ControlPlaneError(
            f"{BUILD_SCRIPT.name} failed (exit {proc.returncode}):\n" + "\n".join(said[-10:])
        )
    return Path(out.strip().splitlines()[-1])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    user: str,
    *,
    token: str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    namespace: str | None = None,
) -> Path:
    credentials: dict[str, str] = {}
    if token is not None:
        credentials["token"] = token
    if cert is not None and key is not None:
        credentials |= {"client-certificate": str(cert), "client-key": str(key)}
    context: dict[str, str] = {"cluster": "lab", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lab", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "lab", "context": context}],
        "current-context": "lab",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


@dataclass
class Ports:
    """Where each component listens; 0 means pick a free one (on the host)."""

    apiserver: int = 6443
    etcd_client: int = 2379
    etcd_peer: int = 2380
    controller_manager: int = 10257

    @classmethod
    def free(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())


@dataclass
class ControlPlane:
    """One etcd, one kube-apiserver, one kube-controller-manager.

    ``bind``: the address kube-apiserver listens on (``0.0.0.0`` inside a lab namespace);
    ``advertise``: the address it names as its own; ``addresses``: every address clients dial
    (the serving certificate names them all); ``audit_policy``: an audit policy (a dict) to log
    requests with, to ``audit.log`` in the directory."""

    dir: Path
    bin: Path
    bind: str = "127.0.0.1"
    advertise: str = "127.0.0.1"
    addresses: Sequence[str] = ()
    ports: Ports = field(default_factory=Ports.free)
    netns: str | None = None
    dial: str = "127.0.0.1"  # where this process reaches kube-apiserver (from the host)
    audit_policy: Mapping[str, Any] | None = None
    apiserver_args: Sequence[str] = ()
    procs: dict[str, Proc] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # This process's children and how each was started, so that they are reaped and can be
    # restarted; a ControlPlane rebuilt from saved state (``l2lab down``) has only ``procs``.
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _argv: dict[str, list[str]] = field(default_factory=dict, repr=False)

    # -- paths ------------------------------------------------------------------------------

    @property
    def pki(self) -> Pki:
        return Pki(self.dir / "pki")

    @property
    def url(self) -> str:
        """The apiserver as seen from inside its namespace (or from the host without one)."""
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.dir / "audit.log"

    def log(self, component: str) -> Path:
        return self.dir / f"{component}.log"

    @property
    def kubectl_path(self) -> Path:
        return self.bin / "kubectl"

    # -- start and stop ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> ControlPlane:
        """Start all three and wait until the cluster is usable; ``timings`` says how long each
        step took. On failure, stops what it started and raises with the log's last lines."""
        t0 = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def _start(self, timeout: float) -> None:
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        Pki.create(self.pki.dir, [self.advertise, *self.addresses])
        pki = self.pki
        self.timings["pki"] = time.monotonic() - t0
        write_kubeconfig(self.admin_kubeconfig, self.url, pki.ca_cert, "admin",
                                 cert=pki.cert("admin"), key=pki.key("admin"))  # fmt: skip
        deadline = t0 + timeout

        p = self.ports
        etcd_url = f"http://127.0.0.1:{p.etcd_client}"
        self._spawn("etcd", [
            "--name=lab", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
            f"--initial-cluster=lab=http://127.0.0.1:{p.etcd_peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])  # fmt: skip
        # kube-apiserver waits for etcd by itself; /readyz includes etcd's health.
        args = [
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.bind}", f"--advertise-address={self.advertise}",
            f"--secure-port={p.apiserver}",
            f"--tls-cert-file={pki.cert('apiserver')}",
            f"--tls-private-key-file={pki.key('apiserver')}",
            f"--cert-dir={self.dir / 'apiserver-certs'}",
            f"--client-ca-file={pki.ca_cert}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-account-key-file={pki.sa_pub}",
            "--authorization-mode=RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The `kubernetes` Service's endpoints would name the advertise address, which
            # nothing serves on the nodes' side; nobody here reads them.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]  # fmt: skip
        if self.audit_policy is not None:
            policy = self.dir / "audit-policy.yaml"
            policy.write_text(yaml.safe_dump(dict(self.audit_policy)))
            args += [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
                     "--audit-log-mode=blocking", "--audit-log-format=json"]  # fmt: skip
        self._spawn("kube-apiserver", [*args, *self.apiserver_args])
        self._wait(deadline, self._readyz)
        self.timings["kube-apiserver"] = time.monotonic() - t0

        kcm = write_kubeconfig(self.dir / "controller-manager.kubeconfig", self.url, pki.ca_cert,
                               "kube-controller-manager", cert=pki.cert("kube-controller-manager"),
                               key=pki.key("kube-controller-manager"))  # fmt: skip
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={kcm}", f"--authentication-kubeconfig={kcm}",
            f"--authorization-kubeconfig={kcm}",
            "--leader-elect=false", f"--controllers={','.join(CONTROLLERS)}",
            "--bind-address=127.0.0.1", f"--secure-port={p.controller_manager}",
            f"--cert-dir={self.dir / 'controller-manager-certs'}",
            "--use-service-account-credentials=false",
            "--concurrent-gc-syncs=5", "--concurrent-namespace-syncs=5",
        ])  # fmt: skip

        def usable() -> bool:
            return (
                self.get("/api/v1/namespaces/default")[0] == 200
                and self.get("/api/v1/namespaces/default/services/kubernetes")[0] == 200
                and self.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
            )

        self._wait(deadline, usable)
        self.timings["ready"] = time.monotonic() - t0

    def _spawn(self, component: str, args: list[str] | None = None) -> None:
        """Start ``component`` (again, with the same arguments, when ``args`` is None)."""
        if args is not None:
            argv = [str(self.bin / component), *args]
            if self.netns is not None:
                argv = ["nsenter", f"--net=/run/netns/{self.netns}", *argv]
            self._argv[component] = argv
        with self.log(component).open("ab") as log:
            proc = subprocess.Popen(
                self._argv[component],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # l2lab exits; the control plane stays up
            )
        self._children[component] = proc
        self.procs[component] = proc_of(proc.pid)

    def _readyz(self) -> bool:
        return self.get("/readyz")[0] == 200

    def _wait(self, deadline: float, ready: Callable[[], bool]) -> None:
        """Until ``ready()``; raises with the log of a component that exited, or of the last one
        started when time is up."""
        while True:
            for component, proc in self._children.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{component} exited with {proc.returncode}; its log ends:\n"
                        + self.tail(component)
                    )
            with contextlib.suppress(OSError, ssl.SSLError, http.client.HTTPException):
                if ready():
                    return
            if time.monotonic() > deadline:
                last = list(self._children)[-1]
                raise ControlPlaneError(f"{last} was not ready in time; its log ends:\n"
                                        + self.tail(last))  # fmt: skip
            time.sleep(0.05)

    def tail(self, component: str, lines: int = 20) -> str:
        try:
            text = self.log(component).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the components (controller manager first, etcd last), SIGKILL what is left
        after ``timeout``; only the processes this control plane started."""
        for component in reversed(COMPONENTS):
            proc = self.procs.get(component)
            if proc is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                if proc.alive():
                    os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                    os.kill(proc.pid, signal.SIGTERM)
            self._reap(component, proc, timeout)

    def _reap(self, component: str, proc: Proc, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        child = self._children.get(component)
        while proc.alive() and time.monotonic() < deadline:
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=0.05)
            else:
                time.sleep(0.05)
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)

    # -- faults -----------------------------------------------------------------------------

    def signal(self, component: str, sig: signal.Signals) -> None:
        """Send ``sig`` to one component (SIGSTOP: a stall; SIGCONT: resume)."""
        proc = self.procs.get(component)
        if proc is None or not proc.alive():
            raise ControlPlaneError(f"{component} is not running")
        os.kill(proc.pid, sig)

    def cont(self, component: str) -> None:
        """SIGCONT, whatever a test stopped (the session's control plane must go on)."""
        with contextlib.suppress(ControlPlaneError, ProcessLookupError):
            self.signal(component, signal.SIGCONT)

    def kill(self, component: str) -> None:
        """SIGKILL one component (a crash); ``restart`` brings it back with the same flags."""
        proc = self.procs[component]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        self._reap(component, proc, 5.0)

    def restart(self, component: str, timeout: float = 60.0) -> None:
        if self.procs.get(component) is not None and self.procs[component].alive():
            self.kill(component)
        self._spawn(component)
        self._wait(time.monotonic() + timeout, self._readyz)  # etcd's health is part of it

    # -- talking to it as admin -------------------------------------------------------------

    def _admin_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(self.pki.cert("admin"), self.pki.key("admin"))
        return context

    def request(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """One request as the admin (``system:masters``); returns the status and the decoded
        JSON body (or the text, when it is not JSON)."""
        conn = http.client.HTTPSConnection(
            self.dial, self.ports.apiserver, context=self._admin_context(), timeout=timeout
        )
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read().decode(errors="replace")
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path, timeout=2.0)

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Create ``obj`` (a dict) as admin; an object that exists already is left as it is."""
        status, body = self.request("POST", _collection_path(obj), dict(obj))
        if status not in (200, 201, 409):
            raise ControlPlaneError(f"creating {obj['kind']} {obj['metadata']['name']}: {body}")

    def service_account_token(self, namespace: str, name: str, seconds: int = 7 * 24 * 3600) -> str:
        """A token of ServiceAccount ``namespace/name`` minted by the apiserver (TokenRequest),
        as the kubelet mints a pod's projected token."""
        status, body = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": seconds}},
        )  # fmt: skip
        if status != 201:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name}: {status} {body}")
        return str(body["status"]["token"])

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """The built kubectl as admin (inside the namespace when there is one)."""
        argv = [str(self.kubectl_path), f"--kubeconfig={self.admin_kubeconfig}", *args]
        if self.netns is not None:
            argv = ["nsenter", f"--net=/run/netns/{self.netns}", *argv]
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done


def _collection_path(obj: Mapping[str, Any]) -> str:
    """The URL path that creates ``obj``, for the few core and RBAC kinds the lab creates."""
    group_version = str(obj["apiVersion"])
    base = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    namespace = obj["metadata"].get("namespace")
    plural = str(obj["kind"]).lower() + "s"
    if plural.endswith("ys"):
        plural = plural[:-2] + "ies"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
