"""`l2lab apiserver` runs the server alone, prints its URL and stops cleanly on SIGTERM,
keeping its objects in the state file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from kubernetes import client

from tests.integration.kubeapi.conftest import CRD_DIR, make_client


def _start(state: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from lab.cli import main; main()",
            "apiserver",
            "--listen",
            "127.0.0.1:0",
            "--state-file",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else ""
    return process, url


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_apiserver_command_serves_and_persists(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    process, url = _start(state)
    try:
        api = make_client(url)
        core = client.CoreV1Api(api)
        core.create_node({"metadata": {"name": "n1"}})
        objects = client.CustomObjectsApi(api)
        import yaml

        crd = yaml.safe_load((CRD_DIR / "ciliuml2announcementpolicies.yaml").read_text())
        client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
        objects.create_cluster_custom_object(
            "cilium.io",
            "v2alpha1",
            "ciliuml2announcementpolicies",
            {
                "apiVersion": "cilium.io/v2alpha1",
                "kind": "CiliumL2AnnouncementPolicy",
                "metadata": {"name": "p"},
            },
        )
        api.close()
    finally:
        _stop(process)
    process, url = _start(state)
    try:
        api = make_client(url)
        assert client.CoreV1Api(api).read_node("n1").metadata.name == "n1"
        policy = client.CustomObjectsApi(api).get_cluster_custom_object(
            "cilium.io", "v2alpha1", "ciliuml2announcementpolicies", "p"
        )
        assert policy["metadata"]["generation"] == 1
        api.close()
    finally:
        _stop(process)
