"""The lab's API server process: ``python -m lab.labserver <lab-dir> ...``, run by ``l2lab up``
inside the LAN namespace, where it listens on the switch's address (198.51.100.1:6443, for the
nodes) and on the LAN end of the host link (203.0.113.4k+1:6443, for kubectl on the host).

It is the test server of lab/kubeapi with TLS, bearer tokens, RBAC from its own stored objects
and the /_lab/ control surface, and it writes the credentials everyone else uses:

- ``admin.kubeconfig``: the admin (``system:masters``), for ``l2lab kubectl`` and the lab itself;
- ``<node>/kubeconfig``: one token per node for the ServiceAccount ``kube-system/l2announcer``.

Every node's agent authenticates as the same ServiceAccount, as a DaemonSet's pods do, so RBAC sees
one user. To cut off a single node (``l2lab api partition node2``) the fault rules must still
tell the nodes apart: each node's token is bound to its node, as the real apiserver binds a pod's
projected token (``authentication.kubernetes.io/node-name``, ``UserInfo.node``), and fault rules
can name ``<user>@<node>``. Everything else (RBAC, the request log) sees the plain user.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from lab.kubeapi.security import Security


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.labserver")
    parser.add_argument("lab_dir", type=Path)
    parser.add_argument("--lan-ip", required=True)
    parser.add_argument("--host-ip", required=True)
    parser.add_argument("--port", type=int, default=6443)
    parser.add_argument("--node", action="append", default=[])
    parser.add_argument("--service-account", default="kube-system/l2announcer")
    args = parser.parse_args(argv)
    lab_dir: Path = args.lab_dir
    sa_namespace, _, sa_name = str(args.service_account).partition("/")

    security = Security.create(lab_dir / "pki", extra_sans=[args.lan_ip, args.host_ip])
    server = security.server(host="0.0.0.0", port=args.port)
    server.start()
    security.write_admin_kubeconfig(
        lab_dir / "admin.kubeconfig", f"https://{args.host_ip}:{args.port}"
    )
    for node in args.node:
        token = security.authenticator.add_service_account(sa_namespace, sa_name, node=node)
        security.write_kubeconfig(
            lab_dir / node / "kubeconfig",
            f"https://{args.lan_ip}:{args.port}",
            token,
            f"{sa_name}-{node}",
            namespace=sa_namespace,
        )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    (lab_dir / "apiserver.ready").write_text("ready\n")
    print(f"l2lab API server on {args.lan_ip}:{args.port} and {args.host_ip}:{args.port}")
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        security.faults.clear()
        server.stop()
    return 0


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
