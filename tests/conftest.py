"""Test layout: the directory a test lives in decides its marker and what it may touch.

- tests/unit: pure and fast, never touches the host.
- tests/integration: a real kube-apiserver (one per session, tests/kube.py) over real HTTP.
- tests/privileged: network namespaces and BPF; needs root, skipped with a reason otherwise.
- tests/e2e: the whole lab; needs root as well.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.controlplane import ControlPlane
from tests.kube import Kube, kube_for_test, start_control_plane

_TESTS = Path(__file__).parent
_NEEDS_ROOT = {"privileged", "e2e"}

# The venv's own tools (l2dbg, l2lab) come
# first, as they would for a user who activated it.
_VENV_BIN = str(Path(sys.executable).parent)
if _VENV_BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _VENV_BIN + os.pathsep + os.environ.get("PATH", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    is_root = os.geteuid() == 0
    for item in items:
        try:
            kind = Path(item.fspath).relative_to(_TESTS).parts[0]
        except ValueError:
            continue
        if kind in {"unit", "integration", "privileged", "e2e"}:
            item.add_marker(getattr(pytest.mark, kind))
        if kind in _NEEDS_ROOT and not is_root:
            item.add_marker(
                pytest.mark.skip(reason=f"{kind} tests need root (network namespaces, BPF)")
            )


# -- the real control plane (tests/kube.py) -------------------------------------------------------


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager for the whole session (built on first use:
    scripts/controlplane-build.sh)."""
    cp = start_control_plane(tmp_path_factory.mktemp("controlplane"))
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def kube(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Kube]:
    """This test's namespace and name prefix on the session's control plane, cleaned up after."""
    with kube_for_test(control_plane, tmp_path) as k:
        yield k
