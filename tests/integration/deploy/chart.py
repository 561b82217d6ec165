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
) -> str:
    """`helm template` of the chart: ``values`` as a values file, ``sets`` as `--set` arguments
    (helm parses them, as on a user's command line)."""
    args = [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ]
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
    home: Path, values: Obj | None = None, sets: Sequence[str] = (), namespace: str = NAMESPACE
) -> list[Obj]:
    """The rendered objects (without the CRD, as `helm template` prints them by default)."""
    return load_docs_from_text([template(home, values, sets, namespace)])
