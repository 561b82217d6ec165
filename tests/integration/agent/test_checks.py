"""The judges of the agent tests catch what they are meant to: synthetic lease histories and
sampled tables, no processes."""

from __future__ import annotations

from tests.integration.agent.cluster import (
    Holding,
    LeaseWrite,
    Sample,
    check_announcements,
    check_leases,
    holdings,
)

L = "cilium-l2announce-default-a"
IP = "198.51.100.1"


def _w(t: float, writer: str, holder: str, verb: str = "update") -> LeaseWrite:
    return LeaseWrite(t, writer, verb, holder, 3.0)


def _sample(t: float, **tables: set[str]) -> Sample:
    return Sample(t, t + 0.01, {n: frozenset(ips) for n, ips in tables.items()})


def test_holdings_end_at_release_or_at_expiry() -> None:
    writes = [
        _w(0.0, "n1", "n1", "create"),
        _w(1.0, "n1", "n1"),
        _w(2.0, "n1", ""),  # released
        _w(2.1, "n2", "n2"),
        _w(3.0, "n2", "n2"),  # n2's last renew: held until 6.0
        _w(7.0, "n3", "n3"),  # taken over after expiry
    ]
    assert holdings(writes) == [
        Holding("n1", 0.0, 2.0),
        Holding("n2", 2.1, 6.0),
        Holding("n3", 7.0, float("inf")),
    ]
    assert check_leases({L: writes}) == []


def test_a_takeover_before_expiry_is_a_violation() -> None:
    writes = [_w(0.0, "n1", "n1", "create"), _w(1.0, "n1", "n1"), _w(3.5, "n2", "n2")]
    (problem,) = check_leases({L: writes})
    assert "n2 took it from n1" in problem and "0.500s before" in problem


def test_writing_someone_else_as_holder_or_releasing_their_lease_is_a_violation() -> None:
    writes = [_w(0.0, "n1", "n1", "create"), _w(5.0, "n2", "n3"), _w(5.5, "n1", "")]
    problems = check_leases({L: writes})
    assert len(problems) == 2
    assert "n2 wrote holder n3" in problems[0]
    assert "n1 released n3's lease" in problems[1]


def test_announcing_outside_a_holding_is_a_violation() -> None:
    writes = [_w(1.0, "n1", "n1", "create"), _w(2.0, "n1", ""), _w(2.5, "n2", "n2")]
    fine = [_sample(1.5, n1={IP}, n2=set()), _sample(3.0, n1=set(), n2={IP})]
    assert check_announcements(fine, {L: writes}, {L: IP}) == []
    early = [_sample(0.5, n1={IP})]  # before its create arrived
    late = [_sample(2.2, n1={IP})]  # after its release arrived
    never = [_sample(1.5, n3={IP})]
    for samples in (early, late, never):
        assert len(check_announcements(samples, {L: writes}, {L: IP})) == 1
