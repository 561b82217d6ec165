"""The announcing node on the Service: annotation and event, visible to kubectl describe."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from kubernetes import client

from agent.service_status import ANNOTATION, ServiceStatusWriter, kubernetes_writers
from lab.kubeapi.server import KubeApiServer


def test_annotation_and_event_follow_the_holder(tmp_path: Path) -> None:
    server = KubeApiServer().start()
    configuration = client.Configuration()
    configuration.host = server.url
    api = client.ApiClient(configuration)
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_service(
            "default",
            {"metadata": {"name": "service-red"}, "spec": {"type": "LoadBalancer",
                                                         "ports": [{"port": 80}]}},
        )  # fmt: skip
        writers = {n: ServiceStatusWriter(n, *kubernetes_writers(api, n)) for n in ("n1", "n2")}
        for w in writers.values():
            w.start()
        deadline = time.monotonic() + 10
        # A failover: n1 announces, later n2 takes over.
        writers["n1"].announced("default", "service-red", "lease taken")
        while writers["n1"].written < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        writers["n2"].announced("default", "service-red", "took over in 0.12s")
        while writers["n2"].written < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        svc = core.read_namespaced_service("service-red", "default")
        assert svc.metadata.annotations[ANNOTATION] == "n2"
        events = core.list_namespaced_event(
            "default", field_selector="involvedObject.name=service-red"
        ).items
        assert [(e.reason, e.message) for e in events] == [
            ("Announcing", "announcing from node n1 (lease taken)"),
            ("Announcing", "announcing from node n2 (took over in 0.12s)"),
        ]
        assert {e.involved_object.uid for e in events} == {svc.metadata.uid}
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            f"apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: {server.url}}}}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
            "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
        )
        kubectl = shutil.which("kubectl")
        assert kubectl is not None
        out = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "describe", "svc", "service-red"],
            capture_output=True, text=True, timeout=30, check=True,
            env={**os.environ, "HOME": str(tmp_path)},
        ).stdout  # fmt: skip
        assert "l2announcer.io/announcing-node: n2" in out
        assert "announcing from node n2" in out
        for w in writers.values():
            w.stop()
    finally:
        api.close()
        server.stop()
