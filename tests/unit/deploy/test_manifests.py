"""The plain manifests in deploy/: objects, RBAC exactly as designed, the ConfigMap's keys and the
DaemonSet's env, capabilities, mounts and probes. docs/deploy.md gives the reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import KEYS_BY_NAME, env_name, resolve
from tests.unit.deploy.manifests import (
    CHART,
    CRDS,
    DEPLOY,
    NAMESPACE,
    Obj,
    by_kind_name,
    container,
    env_of,
    load_docs,
    one,
    plain_objects,
    rules,
)

SA = "l2announcer"

# Keys the DaemonSet sets itself (env vars, mounts): a ConfigMap value for them would either be
# overridden silently or disagree with the mounts.
PLUMBING_KEYS = {
    *("node-name", "k8s-namespace", "state-dir", "bpf-root", "config-dir", "kubeconfig"),
    "agent-health-port",  # the probes' port, set next to the probes
}

# No write on Services but their status conditions (the holder is the Lease's), no pods (L2 pod
# announcements are off in deploy/; the chart adds the rule with the feature).
CLUSTER_RULES = {
    *(("", r, v) for r in ("services", "nodes") for v in ("get", "list", "watch")),
    *(("cilium.io", "ciliuml2announcementpolicies", v) for v in ("get", "list", "watch")),
    ("cilium.io", "ciliuml2announcementpolicies/status", "patch"),
    ("", "events", "create"),  # the Announcing event on the Service
    # Where a Service's endpoints are (externalTrafficPolicy Local): listed and watched only.
    *(("discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")),
    ("", "services/status", "patch"),  # the l2announcer.io/* conditions, never the Service
}
# The seed's lease verbs plus watch (followers watch leases instead of polling).
LEASE_RULES = {
    ("coordination.k8s.io", "leases", v)
    for v in ("create", "get", "update", "list", "delete", "watch")
} | {("apps", "daemonsets=l2announcer", "get")}  # its own DaemonSet: uninstall or restart?


def test_every_file_parses_into_the_expected_objects() -> None:
    objects = by_kind_name(plain_objects())
    assert set(objects) == {
        ("ServiceAccount", SA),
        ("ClusterRole", SA),
        ("ClusterRoleBinding", SA),
        ("Role", SA),
        ("RoleBinding", SA),
        ("ConfigMap", "l2announcer-config"),
        ("DaemonSet", SA),
    }
    for (kind, _), obj in objects.items():
        cluster_scoped = kind in {"ClusterRole", "ClusterRoleBinding"}
        assert ("namespace" in obj["metadata"]) is not cluster_scoped
        if not cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "l2announcer"


def test_one_object_kind_per_file() -> None:
    for path in DEPLOY.glob("*.yaml"):
        kinds = {d["kind"] for d in load_docs([path])}
        assert len(kinds) == 1, f"{path.name}: {kinds}"


def test_the_crd_is_the_policy_crd() -> None:
    (crd,) = load_docs(CRDS.glob("*.yaml"))
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "ciliuml2announcementpolicies.cilium.io"
    assert crd["spec"]["names"]["shortNames"] == ["l2announcement"]


def test_the_chart_ships_the_same_crd_file() -> None:
    for path in CRDS.glob("*.yaml"):
        assert (CHART / "crds" / path.name).read_bytes() == path.read_bytes()


def test_cluster_role_grants_exactly_reads_policy_status_and_events() -> None:
    assert rules(one("ClusterRole")) == CLUSTER_RULES


def test_pods_are_not_readable_while_the_configmap_leaves_pod_announcements_off() -> None:
    assert one("ConfigMap")["data"]["enable-l2-pod-announcements"] == "false"
    assert not any(resource.startswith("pods") for _, resource, _ in rules(one("ClusterRole")))


def test_leases_are_granted_only_in_the_agents_namespace() -> None:
    role = one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules(role) == LEASE_RULES
    assert not any(r[1] == "leases" for r in rules(one("ClusterRole")))


@pytest.mark.parametrize(
    ("binding", "role"), [("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")]
)
def test_bindings_give_the_roles_to_the_service_account(binding: str, role: str) -> None:
    b = one(binding)
    assert b["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": role,
        "name": one(role)["metadata"]["name"],
    }
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": NAMESPACE}]


def test_configmap_keys_are_known_config_keys_and_not_plumbing() -> None:
    data = one("ConfigMap")["data"]
    assert set(data) <= set(KEYS_BY_NAME), set(data) - set(KEYS_BY_NAME)
    assert not set(data) & PLUMBING_KEYS
    assert all(isinstance(v, str) for v in data.values())


def test_configmap_holds_the_config_defaults_with_announcements_enabled() -> None:
    data = one("ConfigMap")["data"]
    assert data.pop("enable-l2-announcements") == "true"
    assert data == {k: KEYS_BY_NAME[k].default for k in data}


def _write_config_dir(data: dict[str, str], directory: Path) -> Path:
    directory.mkdir()
    for key, value in data.items():
        (directory / key).write_text(value)
    return directory


def _daemonset_env(directory: Path) -> dict[str, str]:
    """The DaemonSet's env as the kubelet would set it on node1 (downward API resolved), with the
    config dir pointing at a copy of the ConfigMap."""
    ds = one("DaemonSet")
    fields = {"spec.nodeName": "node1", "metadata.namespace": NAMESPACE}
    env: dict[str, str] = {}
    for name, e in env_of(ds).items():
        env[name] = e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    env[env_name("config-dir")] = str(directory)
    return env


def test_the_agent_reads_the_configmap_and_daemonset_env(tmp_path: Path) -> None:
    data = one("ConfigMap")["data"]
    resolved = resolve({}, _daemonset_env(_write_config_dir(data, tmp_path / "config")))
    assert resolved.warnings == ()
    for key in data:
        assert resolved.sources[key] == "config-dir"
    c = resolved.config
    assert c.enable_l2_announcements is True
    assert (c.node_name, c.k8s_namespace) == ("node1", NAMESPACE)
    assert (c.state_dir, c.bpf_root) == ("/run/l2announcer", "/sys/fs/bpf/tc/globals")
    assert c.l2_announcements_lease_duration == 15.0


def test_daemonset_env() -> None:
    ds = one("DaemonSet")
    env = env_of(ds)
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["L2ANNOUNCER_K8S_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    known = {env_name(k) for k in KEYS_BY_NAME}
    for name in env:
        if name.startswith("L2ANNOUNCER_"):
            assert name in known, f"{name} is not a configuration key's env var"


def test_daemonset_pod_shape() -> None:
    ds = one("DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == one("ServiceAccount")["metadata"]["name"]
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= labels.items()
    c = container(ds)
    assert c["image"] == "localhost/l2announcer:dev"
    assert "command" not in c, "the image's entry point (l2agent) starts the agent"


def test_daemonset_capabilities_are_exactly_the_measured_three() -> None:
    sc = container(one("DaemonSet"))["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW", "BPF"]}
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsUser"] == 0
    assert "securityContext" not in one("DaemonSet")["spec"]["template"]["spec"]


def _mounts(ds: Obj) -> dict[str, tuple[Obj, Obj]]:
    """mountPath -> (volumeMount, volume)."""
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    mounts = container(ds)["volumeMounts"]
    assert len(volumes) == len(mounts)
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in mounts}


def test_daemonset_mounts() -> None:
    ds = one("DaemonSet")
    mounts = _mounts(ds)
    env = {k: str(v.get("value")) for k, v in env_of(ds).items()}

    config_mount, config_volume = mounts[env["L2ANNOUNCER_CONFIG_DIR"]]
    assert config_mount["readOnly"] is True
    assert config_volume["configMap"] == {"name": one("ConfigMap")["metadata"]["name"]}

    state_mount, state_volume = mounts[env["L2ANNOUNCER_STATE_DIR"]]
    # The pod's own memory: the kubelet removes it with the pod, so nothing stays on the node.
    assert state_volume["emptyDir"]["medium"] == "Memory"
    assert not state_mount.get("readOnly")
    host_paths = [v["hostPath"]["path"] for _, v in mounts.values() if "hostPath" in v]
    assert host_paths == ["/sys/fs/bpf"]

    bpf_mount, bpf_volume = mounts["/sys/fs/bpf"]
    assert bpf_volume["hostPath"]["path"] == "/sys/fs/bpf"
    assert bpf_mount["mountPropagation"] == "HostToContainer"
    assert env["L2ANNOUNCER_BPF_ROOT"].startswith("/sys/fs/bpf/")

    # Nothing of the node's kernel: bcc compiles against the headers shipped in the image.
    _, tmp = mounts["/tmp"]
    assert "emptyDir" in tmp
    assert set(mounts) == {
        "/etc/l2announcer",
        "/run/l2announcer",
        "/sys/fs/bpf",
        "/tmp",
    }


def test_daemonset_probes_ask_the_agent_on_its_health_port() -> None:
    ds = one("DaemonSet")
    c = container(ds)
    assert ds["spec"]["template"]["spec"]["hostNetwork"] is True  # so 127.0.0.1 is the agent's
    port = int(env_of(ds)[env_name("agent-health-port")]["value"])
    assert port == int(KEYS_BY_NAME["agent-health-port"].default)
    # Cilium's agent serves its own health on 9879 of the same nodes.
    assert port != 9879
    for probe, path in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ]:
        assert c[probe]["httpGet"] == {"host": "127.0.0.1", "path": path, "port": port}, probe
        assert c[probe]["timeoutSeconds"] >= 1
    # The first start compiles the datapath: two minutes before liveness takes over.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_manifests_are_plain_yaml_without_templates() -> None:
    for path in DEPLOY.glob("*.yaml"):
        assert "{{" not in path.read_text(), path.name
