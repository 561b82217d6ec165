"""Benchmarks of the Kubernetes API test server, against the targets of issue 3.

The server runs as in the lab: its own process, TLS, bearer tokens, RBAC evaluated from stored
objects on every request, fault injector and request log in the pipeline. Clients are the real
`kubernetes` client, each in its own process (as agents are), reusing its connection.

- Lease GET+PUT pairs per second with 4 concurrent clients, each renewing its own lease as the
  elector does (read, set renewTime, replace with the read resourceVersion);
- watch delivery latency to 10 watchers (median, p99, max): a writer replaces one lease every
  20 ms stamping ``time.monotonic_ns()`` (system-wide on Linux) in an annotation; each watcher
  process measures arrival minus stamp for every MODIFIED event it decodes.

Run: ``.venv/bin/python bench/kubeapi.py`` (``--json`` for machine-readable output).
Figures go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {
    "lease_pairs_per_s": (">=", 500.0),
    "watch_p99_ms": ("<=", 20.0),
}
NAMESPACE = "kube-system"
WATCHED = "bench-watched"
WATCH_NAMESPACE = "default"  # apart from the renewers' leases, so watchers see only the writer
STAMP = "bench.l2announcer.io/sent-ns"


def _micro(ts: float) -> str:
    micros = int(ts * 1_000_000) % 1_000_000 or 1
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{micros:06d}Z"


# -- the server process --------------------------------------------------------------------------


def _serve(conn: Connection, workdir: str, clients: int) -> None:
    from lab.kubeapi.security import Security

    security = Security.create(Path(workdir) / "pki")
    server = security.server()
    server.api.seed(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "bench-leases"},
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["create", "get", "update", "list", "watch", "delete"],
                }
            ],
        }
    )
    server.api.seed(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "bench-leases"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "bench-leases",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": "system:serviceaccounts",
                }
            ],
        }
    )
    server.start()
    tokens = [
        security.authenticator.add_service_account(NAMESPACE, f"node{i}") for i in range(clients)
    ]
    conn.send(
        {
            "url": server.url,
            "ca": str(security.tls.ca),
            "admin": security.admin_token,
            "tokens": tokens,
        }
    )
    conn.recv()  # until told to stop
    conn.send({"requests": security.request_log.recorded})
    server.stop()


def _api(url: str, ca: str, token: str) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = url
    configuration.ssl_ca_cert = ca
    configuration.api_key = {"BearerToken": f"Bearer {token}"}
    return client.ApiClient(configuration)


# -- lease GET+PUT pairs -------------------------------------------------------------------------


def _renewer(
    url: str, ca: str, token: str, name: str, start_at: float, seconds: float, out: Any
) -> None:
    from kubernetes import client

    leases = client.CoordinationV1Api(_api(url, ca, token))
    now = _micro(time.time())
    leases.create_namespaced_lease(
        NAMESPACE,
        {
            "metadata": {"name": name},
            "spec": {
                "holderIdentity": name,
                "leaseDurationSeconds": 15,
                "acquireTime": now,
                "renewTime": now,
            },
        },
    )
    while time.monotonic() < start_at:  # warm: connection open, code paths hot
        lease = leases.read_namespaced_lease(name, NAMESPACE)
        leases.replace_namespaced_lease(name, NAMESPACE, lease)
    pairs, deadline = 0, start_at + seconds
    while time.monotonic() < deadline:
        lease = leases.read_namespaced_lease(name, NAMESPACE)
        lease.spec.renew_time = _micro(time.time())
        leases.replace_namespaced_lease(name, NAMESPACE, lease)
        pairs += 1
    out.put(pairs)


def bench_pairs(info: dict[str, Any], clients: int, seconds: float) -> float:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.monotonic() + 2.0
    procs = [
        ctx.Process(
            target=_renewer,
            args=(
                info["url"],
                info["ca"],
                info["tokens"][i],
                f"bench-renew-{i}",
                start_at,
                seconds,
                out,
            ),
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


# -- watch delivery latency ----------------------------------------------------------------------


def _watcher(url: str, ca: str, token: str, expected: int, ready: Any, out: Any) -> None:
    from kubernetes import client, watch

    leases = client.CoordinationV1Api(_api(url, ca, token))
    latencies: list[float] = []
    stream = watch.Watch().stream(
        leases.list_namespaced_lease, WATCH_NAMESPACE, timeout_seconds=120
    )
    for event in stream:
        arrived = time.monotonic_ns()
        if event["type"] == "ADDED":
            ready.put(True)
            continue
        if event["type"] != "MODIFIED":
            continue
        sent = int((event["object"].metadata.annotations or {}).get(STAMP, "0"))
        latencies.append((arrived - sent) / 1e6)
        if len(latencies) >= expected:
            break
    out.put(latencies)


def bench_watch(info: dict[str, Any], watchers: int, updates: int, interval: float) -> list[float]:
    from kubernetes import client

    leases = client.CoordinationV1Api(_api(info["url"], info["ca"], info["admin"]))
    leases.create_namespaced_lease(
        WATCH_NAMESPACE, {"metadata": {"name": WATCHED}, "spec": {"holderIdentity": "bench"}}
    )
    ctx = mp.get_context("fork")
    ready, out = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_watcher,
            args=(
                info["url"],
                info["ca"],
                info["tokens"][i % len(info["tokens"])],
                updates,
                ready,
                out,
            ),
        )
        for i in range(watchers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=30)
    lease = leases.read_namespaced_lease(WATCHED, WATCH_NAMESPACE)
    next_at = time.monotonic()
    for _ in range(updates):
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        lease.metadata.annotations = {STAMP: str(time.monotonic_ns())}
        lease = leases.replace_namespaced_lease(WATCHED, WATCH_NAMESPACE, lease)
    latencies: list[float] = []
    for _ in procs:
        latencies.extend(out.get(timeout=120))
    for p in procs:
        p.join()
    return latencies


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="l2lab-bench-") as workdir:
        parent, child = ctx.Pipe()
        server = ctx.Process(target=_serve, args=(child, workdir, max(args.clients, args.watchers)))
        server.start()
        try:
            info = parent.recv()
            pairs = bench_pairs(info, args.clients, args.seconds)
            latencies = bench_watch(info, args.watchers, args.updates, args.interval)
            parent.send("stop")
            served = parent.recv()["requests"]
        finally:
            server.join(timeout=30)
            if server.is_alive():
                server.terminate()

    results = {
        "lease_pairs_per_s": round(pairs, 1),
        "watch_events": len(latencies),
        "watch_median_ms": round(statistics.median(latencies), 2),
        "watch_p99_ms": round(_percentile(latencies, 0.99), 2),
        "watch_max_ms": round(max(latencies), 2),
        "requests_served": served,
    }
    failed = [
        key
        for key, (op, target) in TARGETS.items()
        if not (results[key] >= target if op == ">=" else results[key] <= target)
    ]
    if args.json:
        print(json.dumps({**results, "failed": failed}))
    else:
        print(
            f"lease GET+PUT pairs/s, {args.clients} clients: {results['lease_pairs_per_s']:>8} (target >= 500)"
        )
        print(
            f"watch delivery to {args.watchers} watchers, {results['watch_events']} events: "
            f"median {results['watch_median_ms']} ms, p99 {results['watch_p99_ms']} ms "
            f"(target <= 20), max {results['watch_max_ms']} ms"
        )
        print(f"requests served: {served}")
        for key in failed:
            print(f"MISSED TARGET: {key} = {results[key]} ({TARGETS[key][0]} {TARGETS[key][1]})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
