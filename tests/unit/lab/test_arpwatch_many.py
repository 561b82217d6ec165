"""arpwatch over several addresses: each request names its address, the summary adds up."""

from __future__ import annotations

from lab.arpwatch import Probe, summarize, summarize_by_ip

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def test_the_summary_over_several_addresses_counts_every_double_and_the_longest_outage() -> None:
    probes = [
        Probe(0, 0.0, [(A, 0.0)], "198.51.100.101"),
        Probe(1, 0.0, [(B, 0.0)], "198.51.100.102"),
        Probe(2, 0.1, [], "198.51.100.101"),
        Probe(3, 0.1, [(B, 0.0), (A, 0.0)], "198.51.100.102"),
        Probe(4, 0.2, [], "198.51.100.101"),
        Probe(5, 0.2, [(A, 0.0)], "198.51.100.102"),
        Probe(6, 0.3, [(B, 0.0)], "198.51.100.101"),
        Probe(7, 0.3, [(A, 0.0)], "198.51.100.102"),
    ]
    total, by_ip = summarize_by_ip(probes)
    assert total == {
        "requests": 8,
        "answered": 6,
        "double": 1,
        "macs": [A, B],
        "outage": 0.3,  # .101: answered at 0.0, then only at 0.3
    }
    assert by_ip["198.51.100.101"] == summarize(probes[0::2])
    assert by_ip["198.51.100.102"]["double"] == 1
    assert by_ip["198.51.100.101"]["macs"] == [A, B]
