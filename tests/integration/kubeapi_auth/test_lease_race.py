"""Two real clients race to take the same expired Lease: exactly one wins, every time.

This is the property the whole election rests on (spec 2.2): both candidates GET the expired
lease, both PUT it with themselves as holder and the resourceVersion they read; the server must
accept one and answer 409 Conflict to the other. Likewise two POSTs of a missing lease: one 201,
one 409 AlreadyExists. Clients are reused across trials (keep-alive over TLS) to keep 1,000
trials fast.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.kubeapi_auth.conftest import NAMESPACE, Node, SecureCluster

TRIALS = 1000
CREATE_TRIALS = 300


def micro(ts: float) -> str:
    micros = int(ts * 1_000_000) % 1_000_000 or 1
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{micros:06d}Z"


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
    return str(json.loads(err.body)["reason"])


def test_two_clients_racing_for_an_expired_lease_exactly_one_wins(cluster: SecureCluster) -> None:
    cluster.grant_leases("node1", "node2")
    nodes = (cluster.node("node1"), cluster.node("node2"))
    admin = client.CoordinationV1Api(cluster.admin)
    pair = threading.Barrier(2)  # both GET before either PUTs: a true read-read-write-write race
    long_ago = micro(time.time() - 3600)

    def take(node: Node, name: str) -> int:
        lease = node.leases.read_namespaced_lease(name, NAMESPACE, _request_timeout=30)
        pair.wait(timeout=60)
        now = micro(time.time())
        lease.spec.holder_identity = node.user
        lease.spec.acquire_time = now
        lease.spec.renew_time = now
        try:
            node.leases.replace_namespaced_lease(name, NAMESPACE, lease, _request_timeout=30)
        except ApiException as err:
            assert err.status == 409 and conflict_reason(err) == "Conflict", err.body
            return 409
        return 200

    def prepare(name: str) -> None:
        admin.create_namespaced_lease(
            NAMESPACE,
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
        holder = admin.read_namespaced_lease(name, NAMESPACE).spec.holder_identity
        assert holder == winner.user
        winners[winner.user] = winners.get(winner.user, 0) + 1

    race(nodes, [f"race-{i}" for i in range(TRIALS)], take, prepare, check)
    assert sum(winners.values()) == TRIALS
    log = cluster.security.request_log
    assert log.count(verb="update", resource="leases", status=200) == TRIALS
    assert log.count(verb="update", resource="leases", status=409) == TRIALS


def test_two_clients_creating_a_missing_lease_exactly_one_wins(cluster: SecureCluster) -> None:
    cluster.grant_leases("node1", "node2")
    nodes = (cluster.node("node1"), cluster.node("node2"))

    def create(node: Node, name: str) -> int:
        now = micro(time.time())
        body = {
            "metadata": {"name": name},
            "spec": {
                "holderIdentity": node.user,
                "leaseDurationSeconds": 15,
                "acquireTime": now,
                "renewTime": now,
            },
        }
        try:
            node.leases.create_namespaced_lease(NAMESPACE, body, _request_timeout=30)  # type: ignore[arg-type]
        except ApiException as err:
            assert err.status == 409 and conflict_reason(err) == "AlreadyExists", err.body
            return 409
        return 201

    def check(name: str, results: list[int]) -> None:
        assert sorted(results) == [201, 409], (name, results)
        holder = nodes[0].leases.read_namespaced_lease(name, NAMESPACE).spec.holder_identity
        assert holder == nodes[results.index(201)].user

    race(nodes, [f"create-{i}" for i in range(CREATE_TRIALS)], create, lambda _: None, check)
