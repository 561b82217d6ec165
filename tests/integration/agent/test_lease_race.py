"""Two clients race to take the same expired Lease on the real apiserver: exactly one wins, every
time.

This is the property the whole election rests on: both candidates GET the expired lease, both PUT
it with themselves as holder and the resourceVersion they read; the apiserver must accept one and
answer 409 Conflict to the other. Likewise two POSTs of a missing lease: one 201, one 409
AlreadyExists. The candidates are two ServiceAccounts with the agent's shipped RBAC; clients are
reused across trials (keep-alive over TLS) to keep the trials quick.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.leases.record import micro_time
from tests.kube import Kube

TRIALS = 300
CREATE_TRIALS = 100


@dataclass
class Node:
    name: str
    leases: Any


@dataclass
class Racer:
    """A candidate thread that runs one step per trial between barriers."""

    node: Node
    step: Callable[[Node, str], int]
    start: threading.Barrier
    done: threading.Barrier
    results: list[int] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def run(self, names: list[str]) -> None:
        for name in names:
            self.start.wait()
            try:
                self.results.append(self.step(self.node, name))
            except BaseException as err:  # reported by the test, never swallowed
                self.errors.append(err)
                self.results.append(-1)
            self.done.wait()


def race(
    nodes: tuple[Node, Node],
    names: list[str],
    step: Callable[[Node, str], int],
    prepare: Callable[[str], None],
    check: Callable[[str, list[int]], None],
) -> None:
    start, done = threading.Barrier(3), threading.Barrier(3)
    racers = [Racer(n, step, start, done) for n in nodes]
    threads = [threading.Thread(target=r.run, args=(names,), daemon=True) for r in racers]
    for t in threads:
        t.start()
    try:
        for i, name in enumerate(names):
            prepare(name)
            start.wait(timeout=60)
            done.wait(timeout=60)
            check(name, [r.results[i] for r in racers])
    except BaseException:
        # Only a failed round breaks the barriers: after the last round the racers are leaving
        # done.wait() on their own, and aborting then raised BrokenBarrierError in their threads.
        start.abort()
        done.abort()
        raise
    finally:
        for t in threads:
            t.join(timeout=60)
    for racer in racers:
        assert not racer.errors, racer.errors[:3]


def conflict_reason(err: ApiException) -> str:
    return str(json.loads(err.body or "{}").get("reason"))


def holder_of(kube: Kube, name: str) -> str:
    lease: Any = kube.coordination.read_namespaced_lease(name, kube.namespace)
    return str(lease.spec.holder_identity)


def candidates(kube: Kube, make_api: Callable[[str], Any]) -> tuple[Node, Node]:
    return (
        Node("node1", client.CoordinationV1Api(make_api("node1"))),
        Node("node2", client.CoordinationV1Api(make_api("node2"))),
    )


def test_two_clients_racing_for_an_expired_lease_exactly_one_wins(
    kube: Kube, make_api: Callable[[str], Any]
) -> None:
    ns = kube.namespace
    nodes = candidates(kube, make_api)
    pair = threading.Barrier(2)  # both GET before either PUTs: a true read-read-write-write race
    long_ago = micro_time(time.time() - 3600)

    def take(node: Node, name: str) -> int:
        lease = node.leases.read_namespaced_lease(name, ns, _request_timeout=30)
        pair.wait(timeout=60)
        now = micro_time(time.time())
        lease.spec.holder_identity = node.name
        lease.spec.acquire_time = now
        lease.spec.renew_time = now
        try:
            node.leases.replace_namespaced_lease(name, ns, lease, _request_timeout=30)
        except ApiException as err:
            assert err.status == 409 and conflict_reason(err) == "Conflict", err.body
            return 409
        return 200

    def prepare(name: str) -> None:
        kube.coordination.create_namespaced_lease(
            ns,
            {
                "metadata": {"name": name},
                "spec": {
                    "holderIdentity": "old-holder",
                    "leaseDurationSeconds": 15,
                    "acquireTime": long_ago,
                    "renewTime": long_ago,
                },
            },  # type: ignore[arg-type]
        )

    winners: dict[str, int] = {}

    def check(name: str, results: list[int]) -> None:
        assert sorted(results) == [200, 409], (name, results)
        winner = nodes[results.index(200)]
        holder = holder_of(kube, name)
        assert holder == winner.name
        winners[winner.name] = winners.get(winner.name, 0) + 1

    started = time.time()
    race(nodes, [f"race-{i}" for i in range(TRIALS)], take, prepare, check)
    assert sum(winners.values()) == TRIALS
    print(f"wins: {winners}")
    # The apiserver's own account agrees: one success and one conflict per trial.
    time.sleep(0.5)
    updates = [e for e in kube.audit(started) if e.verb == "update" and e.name.startswith("race-")]
    assert Counter(e.code for e in updates) == {200: TRIALS, 409: TRIALS}


def test_two_clients_creating_a_missing_lease_exactly_one_wins(
    kube: Kube, make_api: Callable[[str], Any]
) -> None:
    ns = kube.namespace
    nodes = candidates(kube, make_api)

    def create(node: Node, name: str) -> int:
        now = micro_time(time.time())
        body = {
            "metadata": {"name": name},
            "spec": {
                "holderIdentity": node.name,
                "leaseDurationSeconds": 15,
                "acquireTime": now,
                "renewTime": now,
            },
        }
        try:
            node.leases.create_namespaced_lease(ns, body, _request_timeout=30)
        except ApiException as err:
            assert err.status == 409 and conflict_reason(err) == "AlreadyExists", err.body
            return 409
        return 201

    def check(name: str, results: list[int]) -> None:
        assert sorted(results) == [201, 409], (name, results)
        holder = holder_of(kube, name)
        assert holder == nodes[results.index(201)].name

    race(nodes, [f"create-{i}" for i in range(CREATE_TRIALS)], create, lambda _: None, check)
