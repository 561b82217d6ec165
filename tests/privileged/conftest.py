"""Privileged fixtures: each test gets throwaway network namespaces, removed even on failure."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def make_netns() -> Iterator[Callable[[], str]]:
    """A factory of fresh network namespaces named l2t-<random>; all are deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"l2t-{uuid.uuid4().hex[:8]}"
        _ip("netns", "add", name)
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
