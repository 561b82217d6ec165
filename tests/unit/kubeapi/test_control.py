"""The /_lab/ control surface as pure handlers: auth, faults, partitions, log, tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.kubeapi.auth import TokenAuthenticator, admin_user, service_account_user
from lab.kubeapi.control import LabControl
from lab.kubeapi.faults import FaultInjector
from lab.kubeapi.pipeline import RequestRecord
from lab.kubeapi.requestlog import MemoryRequestLog
from tests.unit.kubeapi.infos import lease_info

ADMIN = admin_user()
NODE2 = service_account_user("kube-system", "node2")


@pytest.fixture
def control() -> LabControl:
    return LabControl(TokenAuthenticator(), FaultInjector(), MemoryRequestLog())


def call(
    control: LabControl,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, list[str]] | None = None,
) -> tuple[int, dict[str, Any]]:
    raw = None if body is None else json.dumps(body).encode()
    response = control.handle(ADMIN, method, path, query or {}, raw)
    json.dumps(response.body)  # always JSON-able
    return response.status, response.body


def test_handles_only_its_prefix() -> None:
    assert LabControl.handles("/_lab/faults")
    assert not LabControl.handles("/api/v1/nodes")
    assert not LabControl.handles("/_labx")


def test_requires_a_system_masters_user(control: LabControl) -> None:
    unauthenticated = control.handle(None, "GET", "/_lab/faults")
    assert unauthenticated.status == 401 and unauthenticated.body["reason"] == "Unauthorized"
    denied = control.handle(NODE2, "POST", "/_lab/heal", {}, b"{}")
    assert denied.status == 403
    assert denied.body["message"] == (
        'forbidden: User "system:serviceaccount:kube-system:node2" cannot post path "/_lab/heal"'
    )


def test_add_list_get_remove_fault(control: LabControl) -> None:
    status, created = call(
        control,
        "POST",
        "/_lab/faults",
        {
            "effect": {"type": "error", "preset": "conflict"},
            "match": {"verb": "update", "resource": "leases"},
            "times": 1,
        },
    )
    assert status == 201
    rule_id = created["id"]
    action = control.faults.before(NODE2, lease_info("update"))
    assert action is not None and action.status == 409
    status, listed = call(control, "GET", "/_lab/faults")
    assert status == 200 and [r["id"] for r in listed["items"]] == [rule_id]
    assert listed["items"][0]["hits"] == 1 and listed["items"][0]["spent"] is True
    status, one = call(control, "GET", f"/_lab/faults/{rule_id}")
    assert status == 200 and one["effect"]["preset"] == "conflict"
    assert call(control, "DELETE", f"/_lab/faults/{rule_id}") == (200, {"removed": True})
    status, missing = call(control, "DELETE", f"/_lab/faults/{rule_id}")
    assert status == 404 and missing["code"] == 404


def test_bad_fault_payloads_are_400(control: LabControl) -> None:
    for payload in (
        {"effect": {"type": "nope"}},
        {"effect": {"type": "error", "preset": "nope"}},
        {"effect": {"type": "delay"}},
        {"effect": {"type": "reset"}, "match": {"typo": 1}},
        {"effect": {"type": "reset"}, "times": 0},
    ):
        status, body = call(control, "POST", "/_lab/faults", payload)
        assert status == 400 and body["reason"] == "BadRequest", payload
    response = control.handle(ADMIN, "POST", "/_lab/faults", {}, b"not json")
    assert response.status == 400


def test_presets_and_clear(control: LabControl) -> None:
    status, presets = call(control, "GET", "/_lab/faults/presets")
    assert status == 200 and "apf-429" in presets["presets"]
    call(control, "POST", "/_lab/faults", {"effect": {"type": "reset"}})
    call(control, "POST", "/_lab/faults", {"effect": {"type": "refuse"}})
    assert call(control, "DELETE", "/_lab/faults") == (200, {"removed": 2})


def test_partition_by_user_or_token_and_heal(control: LabControl) -> None:
    token = control.authenticator.add_service_account("kube-system", "node2")
    status, result = call(control, "POST", "/_lab/partition", {"token": token, "mode": "stall"})
    assert status == 200 and result["user"] == NODE2.name and len(result["rules"]) == 2
    action = control.faults.before(NODE2, lease_info("update"))
    assert action is not None and action.kind == "stall"
    assert call(control, "GET", "/_lab/partitions") == (200, {"users": [NODE2.name]})
    assert call(control, "POST", "/_lab/heal", {"user": NODE2.name}) == (200, {"removed": 2})
    assert action.release is not None and action.release.is_set()
    assert call(control, "POST", "/_lab/partition", {"user": "x", "mode": "sideways"})[0] == 400
    bad_heal = call(control, "POST", "/_lab/partition", {"user": "x", "on_heal": "later"})
    assert bad_heal[0] == 400 and "on_heal must be" in bad_heal[1]["message"]
    assert call(control, "POST", "/_lab/partition", {"token": "unknown"})[0] == 400


def test_query_requests_by_params_and_body(control: LabControl) -> None:
    log = control.request_log
    for verb, status in (("get", 200), ("update", 200), ("update", 409)):
        log.record(
            RequestRecord(
                time=log.mark(), user=NODE2.name, info=lease_info(verb), status=status, duration=0.0
            )
        )
    status, body = call(
        control,
        "GET",
        "/_lab/requests",
        query={"verb": ["update"], "user": [NODE2.name], "since": ["60"]},
    )
    assert status == 200 and body["count"] == 2
    assert {item["status"] for item in body["items"]} == {200, 409}
    status, body = call(
        control, "POST", "/_lab/requests/query", {"verb": ["get", "update"], "status": [409]}
    )
    assert body["count"] == 1
    assert call(control, "GET", "/_lab/requests/count", query={"status": ["200,409"]}) == (
        200,
        {"count": 3},
    )
    status, body = call(control, "GET", "/_lab/requests", query={"nope": ["1"]})
    assert status == 400
    status, body = call(control, "GET", "/_lab/requests", query={"since": ["soon"]})
    assert status == 400
    assert call(control, "DELETE", "/_lab/requests")[0] == 200
    assert log.count() == 0


def test_tokens(control: LabControl) -> None:
    status, sa = call(
        control,
        "POST",
        "/_lab/tokens",
        {"kind": "serviceaccount", "namespace": "kube-system", "name": "node3"},
    )
    assert status == 201 and sa["user"]["name"] == "system:serviceaccount:kube-system:node3"
    assert (
        control.authenticator.authenticate({"Authorization": f"Bearer {sa['token']}"}) is not None
    )
    status, user = call(
        control,
        "POST",
        "/_lab/tokens",
        {"kind": "user", "name": "bob", "groups": ["ops"], "token": "bob-token"},
    )
    assert (
        status == 201
        and user["token"] == "bob-token"
        and user["user"]["groups"] == ["ops", "system:authenticated"]
    )
    status, admin = call(control, "POST", "/_lab/tokens", {"kind": "admin"})
    assert "system:masters" in admin["user"]["groups"]
    status, listed = call(control, "GET", "/_lab/tokens")
    assert len(listed["items"]) == 3
    assert call(control, "DELETE", "/_lab/tokens/bob-token") == (200, {"removed": True})
    assert call(control, "DELETE", "/_lab/tokens/bob-token")[0] == 404
    assert call(
        control, "POST", "/_lab/tokens/revoke", {"user": "system:serviceaccount:kube-system:node3"}
    ) == (200, {"removed": 1})
    assert call(control, "POST", "/_lab/tokens", {"kind": "serviceaccount"})[0] == 400
    assert call(control, "POST", "/_lab/tokens", {"kind": "robot"})[0] == 400


def test_unknown_endpoint_is_404_and_index_lists_endpoints(control: LabControl) -> None:
    assert call(control, "GET", "/_lab/nothing")[0] == 404
    assert call(control, "PUT", "/_lab/faults")[0] == 404
    status, index = call(control, "GET", "/_lab/")
    assert status == 200 and "POST /_lab/partition" in index["endpoints"]
