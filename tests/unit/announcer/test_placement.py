"""The placement core: deterministic, bounded, sticky, and a successor for every held unit."""

from __future__ import annotations

import math
import random

from agent.announcer.placement import Placement, Unit, place, ranking, score

NODES3 = frozenset({"node1", "node2", "node3"})


def units(
    n: int, nodes: frozenset[str] = NODES3, holders: dict[str, str] | None = None
) -> list[Unit]:
    holders = holders or {}
    return [Unit(f"svc-{i:03d}", nodes, holders.get(f"svc-{i:03d}", "")) for i in range(n)]


def held_as_placed(us: list[Unit], p: Placement) -> list[Unit]:
    """The units once every owner holds what placement gave it."""
    return [Unit(u.key, u.candidates, p.owner.get(u.key, "")) for u in us]


def test_the_score_is_a_stable_hash_not_pythons_per_process_one() -> None:
    assert score("cilium-l2announce-default-red", "node1") == score(
        "cilium-l2announce-default-red", "node1"
    )
    assert score("a", "node1") != score("a", "node2")
    # pinned: every node, every process and every release must agree on it
    assert score("a", "node1") == 0xE9D0456889A5964A
    assert ranking("a", ["node2", "node1"]) == ranking("a", ["node1", "node2"])


def test_the_same_inputs_give_the_same_placement_in_any_order() -> None:
    us = units(30, holders={"svc-001": "node2", "svc-007": "node3"})
    first = place(us)
    shuffled = list(us)
    random.Random(7).shuffle(shuffled)
    assert place(shuffled) == first


def test_fresh_units_spread_with_no_node_over_the_bound() -> None:
    for n_units in (1, 2, 3, 10, 29, 30, 31, 100, 1000):
        for nodes in (NODES3, frozenset(f"n{i}" for i in range(6))):
            p = place(units(n_units, nodes))
            bound = math.ceil(n_units / len(nodes))
            assert p.target == bound
            assert max(p.loads().values()) <= bound, (n_units, len(nodes), p.loads())
            assert len(p.owner) == n_units
            assert not p.moving


def test_thirty_services_on_three_nodes_hold_at_most_eleven_each() -> None:
    p = place(units(30))
    assert max(p.loads().values()) <= 11
    assert sum(p.loads().values()) == 30


def test_held_leases_stay_with_a_live_holder_within_the_cap() -> None:
    # every unit held by whoever hashing did not prefer, but within the cap: nothing moves
    us = units(9)
    p0 = place(us)
    rotated = {"node1": "node2", "node2": "node3", "node3": "node1"}
    held = [Unit(u.key, u.candidates, rotated[p0.owner[u.key]]) for u in us]
    p = place(held)
    assert p.moving == {}
    assert all(p.owner[u.key] == u.holder for u in held)


def test_a_holder_that_died_loses_its_units_to_live_candidates() -> None:
    us = held_as_placed(units(30), place(units(30)))
    alive = NODES3 - {"node3"}
    after = [Unit(u.key, alive, u.holder) for u in us]
    p = place(after)
    assert set(p.owner.values()) == alive
    assert p.moving == {}, "units of a dead holder are free, not moving"
    assert max(p.loads().values()) <= 15 + 1


def test_the_successor_is_where_a_unit_goes_when_its_holder_disappears() -> None:
    us = held_as_placed(units(30), place(units(30)))
    p = place(us)
    assert set(p.successor) == {u.key for u in us}
    for u in us:
        assert p.successor[u.key] != u.holder
    # node3 dies: what each successor stood by for is what placement without node3 gives
    gone = [Unit(u.key, NODES3 - {"node3"}, u.holder) for u in us]
    after = place(gone)
    for u in us:
        if u.holder == "node3":
            assert after.owner[u.key] == p.successor[u.key]
    # its ten units spread over the two others, both get some
    moved_to = {p.successor[u.key] for u in us if u.holder == "node3"}
    assert moved_to == {"node1", "node2"}


def test_nodes_over_the_cap_give_the_node_that_joined_a_full_share() -> None:
    # node1 and node2 hold 15 each (node3 was down); node3 joins
    two = NODES3 - {"node3"}
    before = held_as_placed(units(30, two), place(units(30, two)))
    assert sorted(place(before).loads().values()) == [15, 15]
    joined = [Unit(u.key, NODES3, u.holder) for u in before]
    p = place(joined)
    assert p.cap == 11
    assert set(p.moving.values()) == {"node3"}
    # keeping 11 each would leave node3 8, two short of ceil(30/3): they keep 10 each
    assert len(p.moving) == 10
    assert sorted(p.loads().values()) == [10, 10, 10]
    # once moved, the placement is steady: nothing else moves
    done = held_as_placed(joined, p)
    assert place(done).moving == {}


def test_moves_never_leave_a_holder_under_the_cap_nor_undo_themselves() -> None:
    rng = random.Random(1)
    nodes = frozenset(f"n{i}" for i in range(4))
    us = units(100, nodes, {f"svc-{i:03d}": "n0" for i in range(100)})  # n0 was alone
    p = place(us)
    assert all(p.owner[k] != "n0" for k in p.moving)
    assert sum(1 for u in us if p.owner[u.key] == "n0") == p.cap
    # moves applied one at a time, in any order: every step still agrees on the rest
    state = {u.key: u.holder for u in us}
    pending = sorted(p.moving)
    rng.shuffle(pending)
    moves = 0
    while True:
        cur = place([Unit(k, nodes, h) for k, h in state.items()])
        if not cur.moving:
            break
        k = sorted(cur.moving)[0]
        state[k] = cur.moving[k]
        moves += 1
        assert moves <= 100
    assert moves == 100 - p.cap
    assert max(place([Unit(k, nodes, h) for k, h in state.items()]).loads().values()) <= p.cap


def test_without_rebalancing_held_units_never_move() -> None:
    us = units(30, holders={f"svc-{i:03d}": "node1" for i in range(30)})
    p = place(us, rebalance=False)
    assert p.moving == {}
    assert all(o == "node1" for o in p.owner.values())


def test_candidates_restricted_by_policy_are_respected() -> None:
    only12 = frozenset({"node1", "node2"})
    us = [Unit(f"a{i}", only12) for i in range(10)] + [Unit(f"b{i}", NODES3) for i in range(5)]
    p = place(us)
    for u in us:
        assert p.owner[u.key] in u.candidates
    assert "x" not in place([Unit("x", frozenset())]).owner  # no candidate: nobody


def test_a_holder_that_is_not_a_candidate_any_more_does_not_keep_its_unit() -> None:
    p = place([Unit("a", frozenset({"node2"}), "node1")])
    assert p.owner == {"a": "node2"} and p.moving == {} and p.successor == {}


def test_one_over_the_target_is_kept_when_it_leaves_nobody_two_short() -> None:
    # 29 units: target 10; 11, 11 and 7 would leave node3 two short, 10, 10, 9 does not
    two = NODES3 - {"node3"}
    before = held_as_placed(units(29, two), place(units(29, two)))
    p = place([Unit(u.key, NODES3, u.holder) for u in before])
    assert sorted(p.loads().values()) == [9, 10, 10]
    steady = held_as_placed(before, p)
    assert place(steady).moving == {}
    # 11, 9, 9 is left alone: nobody is two short
    rows = [Unit(f"k{i}", NODES3, "node1" if i < 11 else "node2" if i < 20 else "node3")
            for i in range(29)]  # fmt: skip
    assert place(rows).moving == {}
