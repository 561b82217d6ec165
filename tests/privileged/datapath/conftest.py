"""Fixtures: a per-test BPF root removed even on failure, a node+client lab, loaders, raw ports."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.privileged.datapath.lab import Lab, Loader, Port, build_lab


@pytest.fixture
def bpf_root() -> Iterator[str]:
    """A BPF root of our own under bpffs, so pins never collide with the host's or other tests'."""
    root = f"/sys/fs/bpf/l2t-{uuid.uuid4().hex[:8]}"
    yield root
    shutil.rmtree(root, ignore_errors=True)
    assert not Path(root).exists(), f"pins left in {root}"


@pytest.fixture
def lab(make_netns: Callable[[], str]) -> Lab:
    return build_lab(make_netns(), make_netns())


@pytest.fixture
def lab_with_node_ip(make_netns: Callable[[], str]) -> Lab:
    return build_lab(make_netns(), make_netns(), node_ip=True)


@pytest.fixture
def lab6(make_netns: Callable[[], str]) -> Lab:
    """The lab with IPv6 on: the client's kernel resolves VIPs by Neighbour Discovery."""
    return build_lab(make_netns(), make_netns(), ipv6=True)


@pytest.fixture
def lab6_with_node_ip(make_netns: Callable[[], str]) -> Lab:
    return build_lab(make_netns(), make_netns(), node_ip=True, ipv6=True)


@pytest.fixture
def loaders() -> Iterator[Callable[..., Loader]]:
    """Start loaders in a namespace; every one still running is killed afterwards."""
    started: list[Loader] = []

    def start(
        ns: str,
        bpf_root: str,
        *extra: str,
        wrap: tuple[str, ...] = (),
        inner: tuple[str, ...] = (),
    ) -> Loader:
        loader = Loader(ns, bpf_root, *extra, wrap=wrap, inner=inner)
        started.append(loader)
        return loader

    yield start
    for loader in started:
        if loader.alive():
            loader.stop("kill")


@pytest.fixture
def client_port(lab: Lab) -> Iterator[Port]:
    port = Port(lab.client, "c0")
    yield port
    port.close()


@pytest.fixture
def client_port_factory() -> Iterator[Callable[[Lab], Port]]:
    """A raw port on the client side of any lab (for the labs other than ``lab``)."""
    ports: list[Port] = []

    def make(lab: Lab) -> Port:
        port = Port(lab.client, "c0")
        ports.append(port)
        return port

    yield make
    for port in ports:
        port.close()
