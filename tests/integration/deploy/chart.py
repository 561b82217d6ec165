"""The Helm chart (deploy/helm/l2announcer) rendered by the helm binary built with the control
plane (scripts/controlplane-build.sh), as a user's `helm template` renders it.

Every render names the Kubernetes release the control plane runs (``--kube-version``): a helm
built from Go modules without Helm's own release flags defaults its capabilities to the
client-go release it links, which is not the server's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import yaml

from lab.controlplane import binaries
from tests.kube import pinned_kubernetes_version
from tests.unit.deploy.manifests import CHART, NAMESPACE, Obj, load_docs_from_text

KUBE_VERSION = pinned_kubernetes_version()
RELEASE = "l2announcer"
# What `--api-versions` names for a cluster that serves the Prometheus Operator's ServiceMonitor.
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
# The AppArmor setting of clusters before 1.30, which have no securityContext field for it.
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/l2announcer"

# Every value of prometheus.serviceMonitor, none of them the default.
SERVICE_MONITOR: Obj = {
    "enabled": True,
    "labels": {"release": "kube-prometheus-stack"},
    "annotations": {"example.com/owner": "network"},
    "interval": "30s",
    "scrapeTimeout": "10s",
    "metricRelabelings": [{"action": "drop", "regex": "go_.*"}],
}

# A value for every scheduling, pod and container knob of the chart (none of them the default).
KNOBS: Obj = {
    "nodeSelector": {"node-role.example.com/l2": "true"},
    "tolerations": [
        {"key": "example.com/l2", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "example.com/no-l2", "operator": "DoesNotExist"}]}
                ]
            }
        }
    },
    "priorityClassName": "system-cluster-critical",
    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    "podAnnotations": {"example.com/team": "network"},
    "podLabels": {"example.com/team": "network"},
    "imagePullSecrets": [{"name": "regcred"}],
    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
    "extraArgs": ["--agent-liveness-update-interval=2s"],
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.example:3128"}],
}


class RenderError(Exception):
    """helm refused to render; the message is helm's own."""


def helm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The built helm, with its cache, config and data under ``home`` (never the user's)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(
        [str(binaries() / "helm"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def template(
    home: Path,
    values: Obj | None = None,
    sets: Sequence[str] = (),
    namespace: str = NAMESPACE,
    include_crds: bool = False,
    kube_version: str = KUBE_VERSION,
    api_versions: Sequence[str] = (),
) -> str:
    """`helm template` of the chart: ``values`` as a values file, ``sets`` as `--set` arguments
    (helm parses them, as on a user's command line); ``api_versions`` are the APIs the cluster
    is said to serve besides the built-in ones (`--api-versions`, e.g. a CRD's
    ``group/version/Kind``)."""
    args = [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
    ]
    for api in api_versions:
        args += ["--api-versions", api]
    if values is not None:
        path = home / "values.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(values))
        args += ["--values", str(path)]
    for s in sets:
        args += ["--set", s]
    if include_crds:
        args.append("--include-crds")
    done = helm(*args, home=home)
    if done.returncode != 0:
        raise RenderError(done.stderr.strip())
    return done.stdout


def render(
    home: Path,
    values: Obj | None = None,
    sets: Sequence[str] = (),
    namespace: str = NAMESPACE,
    kube_version: str = KUBE_VERSION,
    api_versions: Sequence[str] = (),
    hooks: bool = False,
) -> list[Obj]:
    """The rendered objects (without the CRD, as `helm template` prints them by default): the
    release's own, or with ``hooks`` only the hook objects (the uninstall Job and its RBAC),
    which Helm creates and deletes around an uninstall instead of installing them."""
    text = template(
        home, values, sets, namespace, kube_version=kube_version, api_versions=api_versions
    )
    objects = load_docs_from_text([text])
    return [o for o in objects if is_hook(o) == hooks]


HOOK_OBJECTS = [  # kubectl's names of the uninstall hook's objects, in `helm template`'s output
    "job.batch/l2announcer-uninstall",
    "role.rbac.authorization.k8s.io/l2announcer-uninstall",
    "rolebinding.rbac.authorization.k8s.io/l2announcer-uninstall",
    "serviceaccount/l2announcer-uninstall",
]


def is_hook(obj: Obj) -> bool:
    return "helm.sh/hook" in ((obj.get("metadata") or {}).get("annotations") or {})
