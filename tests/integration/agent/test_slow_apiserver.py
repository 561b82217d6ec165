"""A leader keeps its leases when every API request takes 300 ms.

A real apiserver answers a lease write after etcd has committed it: milliseconds on an idle
machine, tens of them on a busy one, more across a network. At the default timers a node renews
each lease every 2 s, so its renewals in flight are (leases / 2 s) x the request's round trip; if
the agent cannot have that many in flight, renewals queue, pass the renew deadline and leases are
lost and taken back, over and over. Here the agent reaches the apiserver through a FaultProxy
that holds every answer back 300 ms, and holds 150 leases (75 renewals a second, more than 22 in
flight; a fixed 8 lease workers made at most 25 a second): every Service must stay announced by
it, no lease lost. (The session's Service range holds about 250 ClusterIPs, so the load is made of
latency rather than of more Services.)"""

from __future__ import annotations

import time

from tests.integration.agent.cluster import DEFAULT, Cluster, until

SERVICES = 150
DELAY = 0.3
WINDOW = 10.0
# Room for the renewals (services / retry period = 75/s) and the start-up's creates; the agent
# keeps qps x 50 ms requests in flight (agent/k8s/client.py), here 50.
RATE = ("--k8s-client-qps=1000", "--k8s-client-burst=2000")


def test_a_leader_keeps_its_leases_when_every_request_takes_300ms(cluster: Cluster) -> None:
    ip_of = cluster.services(SERVICES, lambda i: f"198.51.100.{i}")
    ips = set(ip_of.values())
    cluster.credentials("node1", proxied=True)
    cluster.proxies["node1"].slow(DELAY)
    cluster.start_agent("node1", DEFAULT, RATE, proxied=True)
    until(lambda: cluster.announced("node1") == ips, 120, "every service announced")
    cluster.watch_for_overlaps(list(ips))
    log0 = len(cluster.log_text("node1"))
    time.sleep(WINDOW)
    cluster.sampler.stop()
    lost = cluster.log_text("node1")[log0:].count("Stopped leading")
    short = [len(ips - s.tables["node1"]) for s in cluster.sampler.samples]
    assert lost == 0 and max(short) == 0, f"{lost} leases lost, up to {max(short)} unannounced"
