"""Pods as the agent reflects them into the ``pods`` table (``pod_row``)."""

from __future__ import annotations

from agent.k8s.objects import pod_row
from common.tables.pods import Pod


def test_a_pod_keeps_its_uid_addresses_and_host_network() -> None:
    obj = {
        "metadata": {"namespace": "default", "name": "db-0", "uid": "3f1c-uid"},
        "spec": {"nodeName": "node1", "hostNetwork": False},
        "status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]},
    }
    assert pod_row(obj) == Pod(
        "default", "db-0", "node1", ("10.0.0.5", "fd00::5"), False, "3f1c-uid"
    )


def test_a_pod_with_only_pod_ip_or_none_yet() -> None:
    old_style = {"metadata": {"namespace": "a", "name": "b"}, "status": {"podIP": "10.0.0.6"}}
    assert pod_row(old_style) == Pod("a", "b", "", ("10.0.0.6",))
    pending = {"metadata": {"namespace": "a", "name": "c"}, "spec": {"hostNetwork": True}}
    assert pod_row(pending) == Pod("a", "c", "", (), True)
