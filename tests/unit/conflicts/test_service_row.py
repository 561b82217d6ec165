"""What the services table keeps for the conflict reports: the uid Events name the Service by,
and the status of its Conflict condition as last seen."""

from __future__ import annotations

from agent.k8s.objects import service_row


def test_uid_and_the_conflict_conditions_status_are_kept() -> None:
    svc = {
        "metadata": {"namespace": "default", "name": "red", "uid": "1234", "resourceVersion": "7"},
        "spec": {"type": "LoadBalancer"},
        "status": {
            "conditions": [
                {"type": "l2announcer.io/Announced", "status": "True"},
                {"type": "l2announcer.io/Conflict", "status": "True", "reason": "VIPConflict"},
            ]
        },
    }
    row = service_row(svc)
    assert row is not None
    assert (row.uid, row.conflict_condition) == ("1234", "True")
    del svc["status"]
    row = service_row(svc)
    assert row is not None and row.conflict_condition == ""
