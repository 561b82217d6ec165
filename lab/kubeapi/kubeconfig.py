"""Credentials for clients of the test server: kubeconfig files and in-cluster directories.

Two ways a real client finds its apiserver, and the lab offers both:

- **kubeconfig** (``kubectl``, ``kubernetes.config.load_kube_config``): one file naming the server
  URL, the CA (inline as ``certificate-authority-data``) and the user's bearer token. The lab writes
  one for the admin and one per ServiceAccount.
- **in-cluster** (``kubernetes.config.load_incluster_config``, what the agent uses in a pod): the
  client reads ``KUBERNETES_SERVICE_HOST`` / ``KUBERNETES_SERVICE_PORT`` from the environment and
  the files ``token``, ``ca.crt`` and ``namespace`` from the fixed directory
  ``/var/run/secrets/kubernetes.io/serviceaccount``. That path is hard-coded in the client, so a
  lab node outside a pod cannot use it. Instead the lab writes the same three files into a
  directory of its choice and the agent loads them with :func:`load_incluster_config`, which
  runs the client's own ``InClusterConfigLoader`` with the directory's paths and an explicit
  environment (see :meth:`InClusterDir.environ`). Inside a mount namespace the directory can
  also be bind-mounted at the fixed path, after which the stock loader works unchanged.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

INCLUSTER_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_FILE = "token"
CA_FILE = "ca.crt"
NAMESPACE_FILE = "namespace"


def _write_private(path: Path, data: bytes) -> None:
    """Write with mode 0600: these files hold bearer tokens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def kubeconfig_dict(
    server: str,
    ca_pem: bytes,
    token: str,
    user: str,
    cluster: str = "l2lab",
    namespace: str | None = None,
) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user and one current context named ``<user>@<cluster>``."""
    context: dict[str, Any] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    name = f"{user}@{cluster}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": cluster,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }


def write_kubeconfig(
    path: Path,
    server: str,
    ca_pem: bytes,
    token: str,
    user: str,
    cluster: str = "l2lab",
    namespace: str | None = None,
) -> Path:
    """Write a kubeconfig (mode 0600) usable as ``kubectl --kubeconfig=<path>``."""
    config = kubeconfig_dict(server, ca_pem, token, user, cluster, namespace)
    _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path


def service_account_kubeconfig_name(namespace: str, name: str) -> str:
    """File name the lab uses for a ServiceAccount's kubeconfig: ``sa-<ns>-<name>.kubeconfig``."""
    return f"sa-{namespace}-{name}.kubeconfig"


@dataclass(frozen=True, slots=True)
class InClusterDir:
    """A directory laid out like a pod's ServiceAccount mount, plus the server it points at."""

    directory: Path
    host: str
    port: int

    @property
    def token_path(self) -> Path:
        return self.directory / TOKEN_FILE

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def namespace_path(self) -> Path:
        return self.directory / NAMESPACE_FILE

    def environ(self) -> dict[str, str]:
        """The environment a kubelet gives a pod for the ``kubernetes`` Service."""
        return {"KUBERNETES_SERVICE_HOST": self.host, "KUBERNETES_SERVICE_PORT": str(self.port)}

    def namespace(self) -> str:
        return self.namespace_path.read_text().strip()


def write_incluster_dir(
    directory: Path, server: str, ca_pem: bytes, token: str, namespace: str
) -> InClusterDir:
    """Write token, ca.crt and namespace into `directory` for a client of `server` (https URL)."""
    parts = urlsplit(server)
    if parts.scheme != "https" or parts.hostname is None:
        raise ValueError(f"in-cluster config needs an https server URL, got {server!r}")
    port = parts.port or 443
    _write_private(directory / TOKEN_FILE, token.encode())
    (directory / CA_FILE).write_bytes(ca_pem)
    (directory / NAMESPACE_FILE).write_text(namespace)
    return InClusterDir(directory, parts.hostname, port)


def load_incluster_config(
    directory: Path,
    environ: dict[str, str] | None = None,
    configuration: Any = None,
) -> Any:
    """Configure a ``kubernetes.client.Configuration`` from an in-cluster style directory.

    `environ` defaults to the process environment, so an agent started with
    ``KUBERNETES_SERVICE_HOST``/``PORT`` set (as in a pod) needs only the directory. Returns the
    configuration (a new one when none is given; the client's default is left untouched).
    """
    from kubernetes import client
    from kubernetes.config.incluster_config import InClusterConfigLoader

    if configuration is None:
        configuration = client.Configuration()
    loader: Any = InClusterConfigLoader  # untyped in the client package
    loader(
        token_filename=str(directory / TOKEN_FILE),
        cert_filename=str(directory / CA_FILE),
        environ=os.environ if environ is None else environ,
    ).load_and_set(configuration)
    return configuration
