"""Balance of the placement core (agent/announcer/placement.py): how many Services the busiest
node holds, and how many leases move, for 1,000 Services on 3 and on 6 nodes.

Replays what the agents do, one placement per step, every node seeing the same inputs:

- start-up with every node alive at once (each contests only what is placed on it);
- start-up with the nodes arriving one at a time (the first takes everything, the others get
  their share by paced moves: each over-full holder hands over one lease per retry period);
- a node (N+1) joining a steady cluster;
- a node crashing (its leases go to their successors), then rejoining.

Moves are counted one by one, as the holders release them, until no placement moves anything;
"rounds" are retry periods (each over-full holder moves at most one lease per round), so
rounds x retry period is how long the rebalancing takes. The client's gap during a planned move
is measured in the lab (tests/e2e/test_placement.py), not here.

Usage: python -m bench.placement [--services 1000]
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter

from agent.announcer.placement import Unit, place


def settle(held: dict[str, str], alive: frozenset[str]) -> tuple[int, int]:
    """Apply the moves as the holders would, one lease per holder per round; (moves, rounds)."""
    moves = rounds = 0
    while True:
        p = place([Unit(k, alive, h) for k, h in held.items()])
        # free leases (never taken, or of a dead holder) go to their place at once
        for k, h in held.items():
            if h not in alive:
                held[k] = p.owner[k]
        pending: dict[str, list[str]] = {}
        for k in sorted(p.moving):
            pending.setdefault(held[k], []).append(k)
        if not pending:
            return moves, rounds
        rounds += 1
        for keys in pending.values():
            held[keys[0]] = p.moving[keys[0]]
            moves += 1


def largest(held: dict[str, str]) -> int:
    return max(Counter(held.values()).values())


def run(services: int, nodes: int) -> list[str]:
    names = [f"node{i}" for i in range(1, nodes + 2)]
    first = frozenset(names[:nodes])
    keys = [f"cilium-l2announce-default-service-{i}" for i in range(1, services + 1)]
    bound = math.ceil(services / nodes) + 1
    out = [f"{services} Services on {nodes} nodes (bound ceil(S/N) + 1 = {bound}):"]

    t = time.perf_counter()
    p = place([Unit(k, first) for k in keys])
    took = time.perf_counter() - t
    held = dict(p.owner)
    out.append(
        f"  all nodes up at once: largest share {largest(held)}, 0 moves "
        f"(one placement: {took * 1000:.0f} ms)"
    )

    arriving: dict[str, str] = {k: "" for k in keys}
    total_moves = total_rounds = 0
    for n in range(1, nodes + 1):
        moves, rounds = settle(arriving, frozenset(names[:n]))
        total_moves += moves
        total_rounds += rounds
    out.append(
        f"  nodes arriving one by one: largest share {largest(arriving)}, {total_moves} moves "
        f"in {total_rounds} rounds"
    )

    joined = frozenset(names[: nodes + 1])
    moves, rounds = settle(held, joined)
    out.append(
        f"  node{nodes + 1} joins: largest share {largest(held)} (bound "
        f"{math.ceil(services / (nodes + 1)) + 1}), {moves} moves in {rounds} rounds, "
        f"node{nodes + 1} holds {Counter(held.values())[f'node{nodes + 1}']}"
    )

    crashed = names[0]
    lost = sum(1 for h in held.values() if h == crashed)
    moves, _ = settle(held, joined - {crashed})
    out.append(
        f"  {crashed} crashes: its {lost} leases taken by their successors, largest share "
        f"{largest(held)}, {moves} further moves"
    )
    moves, rounds = settle(held, joined)
    out.append(
        f"  {crashed} rejoins: largest share {largest(held)}, {moves} moves in {rounds} rounds, "
        f"{crashed} holds {Counter(held.values())[crashed]}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.placement")
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    for nodes in (3, 6):
        print("\n".join(run(args.services, nodes)))


if __name__ == "__main__":
    main()
