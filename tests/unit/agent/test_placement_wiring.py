"""l2-announcements-balance: the placement gate asks last, and every Node is reflected."""

from __future__ import annotations

from pathlib import Path

import kubernetes

from agent.agent import Agent
from agent.announcer.placement_gate import PlacementGate
from agent.config import Config
from agent.k8s.objects import sources


def agent(tmp_path: Path, balance: bool) -> Agent:
    config = Config(
        state_dir=str(tmp_path),
        node_name="node1",
        enable_l2_announcements=True,
        l2_announcements_balance=balance,
        l2_announcements_rebalance=False,
    )
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    return Agent(config, {}, datapath=False, api_client=api)


def test_with_balance_the_placement_gate_is_the_last_and_follows_the_configuration(
    tmp_path: Path,
) -> None:
    a = agent(tmp_path, True)
    try:
        assert a.announcer is not None and a.placement is not None
        gates = a.announcer._gates
        assert gates[-1] is a.placement and isinstance(a.placement, PlacementGate)
        assert a.placement.pace == a.placement.grace == 2.0  # the retry period
        assert a.placement.rebalance is False
    finally:
        a.db.close()


def test_without_it_no_gate_and_only_this_node_is_reflected(tmp_path: Path) -> None:
    a = agent(tmp_path, False)
    try:
        assert a.placement is None
        assert a.announcer is not None
        assert not any(isinstance(g, PlacementGate) for g in a.announcer._gates)
    finally:
        a.db.close()
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration())
    own = sources(api, "node1", "kube-system")["nodes"]
    every = sources(api, "node1", "kube-system", all_nodes=True)["nodes"]
    assert own._kwargs == {"field_selector": "metadata.name=node1"}
    assert every._kwargs == {"field_selector": None}
