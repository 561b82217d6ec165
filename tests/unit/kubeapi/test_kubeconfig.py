"""Kubeconfigs and in-cluster directories load with the real client's own loaders."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from lab.kubeapi.kubeconfig import (
    kubeconfig_dict,
    load_incluster_config,
    write_incluster_dir,
    write_kubeconfig,
)
from lab.kubeapi.tls import CertificateAuthority

CA_PEM = CertificateAuthority.generate().cert_pem


def test_kubeconfig_shape() -> None:
    cfg = kubeconfig_dict("https://127.0.0.1:6443", CA_PEM, "tok", "admin", namespace="kube-system")
    assert cfg["current-context"] == "admin@l2lab"
    assert base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]) == CA_PEM
    assert cfg["users"] == [{"name": "admin", "user": {"token": "tok"}}]
    assert cfg["contexts"][0]["context"] == {
        "cluster": "l2lab",
        "user": "admin",
        "namespace": "kube-system",
    }


def test_kubeconfig_loads_with_the_kubernetes_client(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "admin.kubeconfig", "https://127.0.0.1:6443", CA_PEM, "tok-1", "admin"
    )
    assert path.stat().st_mode & 0o777 == 0o600
    yaml.safe_load(path.read_text())
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer tok-1"
    assert Path(configuration.ssl_ca_cert).read_bytes() == CA_PEM
    assert configuration.verify_ssl


def test_incluster_dir_loads_with_the_clients_incluster_loader(tmp_path: Path) -> None:
    incluster = write_incluster_dir(
        tmp_path / "sa", "https://127.0.0.1:16443", CA_PEM, "tok-2", "kube-system"
    )
    assert incluster.environ() == {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "16443",
    }
    assert incluster.namespace() == "kube-system"
    assert incluster.token_path.stat().st_mode & 0o777 == 0o600
    configuration = load_incluster_config(incluster.directory, incluster.environ())
    assert configuration.host == "https://127.0.0.1:16443"
    assert configuration.ssl_ca_cert == str(incluster.ca_path)
    assert configuration.api_key["BearerToken"] == "bearer tok-2"
    # The refresh hook re-reads the token file, so a rotated token is picked up.
    assert configuration.refresh_api_key_hook is not None


def test_incluster_without_environment_fails_like_the_client() -> None:
    with pytest.raises(config.ConfigException):
        load_incluster_config(Path("/nonexistent"), environ={})


def test_incluster_needs_https(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_incluster_dir(tmp_path, "http://127.0.0.1:8080", CA_PEM, "t", "kube-system")
