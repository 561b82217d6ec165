"""l2lab service --ip: what it accepts, and what the lab's VIPs become."""

from __future__ import annotations

import pytest

from lab import lab
from lab.inventory import LabState
from lab.netns import LabError


def test_only_another_services_vip_is_accepted_with_one_line_saying_what_to_use() -> None:
    state = LabState(name="t", services=3)
    with pytest.raises(LabError, match=r"^no Service 'service-9' in lab 't' \(Services: service-1"):
        lab.set_service_ip(state, "service-9", "198.51.100.101")
    with pytest.raises(LabError) as e:
        lab.set_service_ip(state, "service-2", "10.0.0.1")
    assert str(e.value) == (
        "--ip 10.0.0.1: use one of the lab's VIPs, e.g. 198.51.100.101 (service-1's), to share it"
    )


def test_a_shared_vip_is_the_services_vip_for_the_lab() -> None:
    state = LabState(name="t", services=3, shared_ips={"service-2": "198.51.100.101"})
    assert state.vips() == {
        "service-1": "198.51.100.101",
        "service-2": "198.51.100.101",
        "service-3": "198.51.100.103",
    }
