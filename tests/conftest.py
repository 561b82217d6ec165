"""Test layout: the directory a test lives in decides its marker and what it may touch.

- tests/unit: pure and fast, never touches the host.
- tests/integration: the Kubernetes API test server over real HTTP.
- tests/privileged: network namespaces and BPF; needs root, skipped with a reason otherwise.
- tests/e2e: the whole lab; needs root as well.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).parent
_NEEDS_ROOT = {"privileged", "e2e"}

# The venv's own tools (l2dbg, l2lab, and kubectl where the bootstrap had to install one) come
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
