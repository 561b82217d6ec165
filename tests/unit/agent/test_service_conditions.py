"""Which changes of this node's l2-contest row say something on the Service's Announced
condition, and what."""

from __future__ import annotations

from agent.service_conditions import ANNOUNCED, Condition, announced_condition, camel
from common.tables.contest import ContestEntry, ContestState

S = ContestState


def row(state: str, reason: str = "", holder: str = "", detail: str = "") -> ContestEntry:
    return ContestEntry("default", "web", state, reason, holder, detail)


def test_camel() -> None:
    assert camel("no-local-endpoint") == "NoLocalEndpoint"
    assert camel("interface-down") == "InterfaceDown"


def test_starting_to_announce_says_true_once() -> None:
    new = row(S.ANNOUNCING, holder="n1")
    assert announced_condition("n1", None, new, False) == Condition(
        ANNOUNCED, True, "Announcing", "announced from node n1"
    )
    assert announced_condition("n1", row(S.STANDBY), new, False) is not None
    assert announced_condition("n1", new, new, False) is None


def test_a_holder_that_a_gate_stops_says_why() -> None:
    new = row(S.REFUSED, "interface-down", "n1", "eth0 has no carrier")
    assert announced_condition("n1", row(S.ANNOUNCING, holder="n1"), new, False) == Condition(
        ANNOUNCED,
        False,
        "InterfaceDown",
        "node n1 stopped announcing: eth0 has no carrier",
        # only over its own claim: the next holder's "announced" may already be there
        only_over="announced from node n1",
    )
    # A node that did not hold it has nothing to say about a reason of its own.
    assert announced_condition("n2", row(S.STANDBY, holder="n1"), new, False) is None


def test_a_cluster_wide_refusal_is_said_by_every_node_while_nobody_holds_the_lease() -> None:
    new = row(S.REFUSED, "no-ready-endpoint", "", "no ready endpoint on any node")
    assert announced_condition("n2", None, new, True) == Condition(
        ANNOUNCED, False, "NoReadyEndpoint", "no ready endpoint on any node"
    )
    held = row(S.REFUSED, "no-ready-endpoint", "n1", "no ready endpoint on any node")
    assert announced_condition("n2", None, held, True) is None  # the holder says it
    assert (
        announced_condition("n2", row(S.NOT_SELECTED, "not-selected"), row(S.STANDBY), True) is None
    )
