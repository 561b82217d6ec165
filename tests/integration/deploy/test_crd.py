"""The CiliumL2AnnouncementPolicy CRD (deploy/crds/), enforced by the real kube-apiserver: bad
policies and bad conditions are refused with the server's own 422 and field path; good ones are
accepted as written. Selectors and interface regexes that the agent reports as policy conditions
(io.cilium/bad-service-selector, bad-node-selector, bad-interface-regex) must stay accepted: the
server cannot judge a Go regexp or a selector's meaning, the agent does and says so in the
policy's status, and the server must accept what it writes there.

Policies are cluster-scoped: each test names its own with the test's prefix and deletes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import pytest
import yaml
from kubernetes import client

from agent.k8s.objects import POLICY_GROUP, POLICY_PLURAL, POLICY_VERSION, policy_row
from agent.k8s.policy_status import kubernetes_patch
from agent.policy.conditions import updated_conditions
from agent.policy.evaluate import (
    COND_BAD_INTERFACE_REGEX,
    COND_BAD_NODE_SELECTOR,
    COND_BAD_SERVICE_SELECTOR,
    evaluate_policy,
)
from lab.lab import policy1
from tests.kube import Kube
from tests.unit.deploy.manifests import Obj

POLICY = (POLICY_GROUP, POLICY_VERSION, POLICY_PLURAL)
KIND = "CiliumL2AnnouncementPolicy"
T0 = 1683906000.0  # 2023-05-12T15:40:00Z

# The seed's example policy (docs: "Policies"), as the lab applies it.
SEED_SPEC: Obj = policy1()["spec"]


def body(name: str, spec: Any) -> Obj:
    return {
        "apiVersion": f"{POLICY_GROUP}/{POLICY_VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
def create(kube: Kube) -> Callable[[Any], Obj]:
    """Create a policy of this test's own (deleted afterwards); returns what the server stored."""
    count = 0

    def make(spec: Any) -> Obj:
        nonlocal count
        count += 1
        name = kube.name(f"policy{count}")
        kube.on_cleanup(lambda: kube.custom.delete_cluster_custom_object(*POLICY, name))
        return cast(Obj, kube.custom.create_cluster_custom_object(*POLICY, body(name, spec)))

    return make


def read(kube: Kube, name: str) -> Obj:
    return cast(Obj, kube.custom.get_cluster_custom_object(*POLICY, name))


def refusal(call: Callable[[], Any]) -> Obj:
    """The Status body of a refused request."""
    with pytest.raises(client.ApiException) as e:
        call()
    status: Obj = json.loads(str(e.value.body))
    assert status["code"] == e.value.status
    return status


# -- spec ---------------------------------------------------------------------------------------

# (spec, field path, the server's message for that field)
BAD_SPECS = [
    pytest.param(
        {"serviceSelector": {"matchExpressions": [{"key": "color", "operator": "Is"}]}},
        "spec.serviceSelector.matchExpressions[0].operator",
        'Unsupported value: "Is": supported values: "In", "NotIn", "Exists", "DoesNotExist"',
        id="unknown-operator",
    ),
    pytest.param(
        {"nodeSelector": {"matchExpressions": [{"operator": "Exists"}]}},
        "spec.nodeSelector.matchExpressions[0].key",
        "Required value",
        id="expression-without-key",
    ),
    pytest.param(
        {"nodeSelector": {"matchExpressions": [{"key": "zone"}]}},
        "spec.nodeSelector.matchExpressions[0].operator",
        "Required value",
        id="expression-without-operator",
    ),
    pytest.param(
        {"serviceSelector": {"matchLabels": {"color": "b" * 64}}},
        "spec.serviceSelector.matchLabels.color",
        "Too long: may not be more than 63 bytes",
        id="label-value-too-long",
    ),
    pytest.param(
        {"nodeSelector": {"matchLabels": {"zone": "-a"}}},
        "spec.nodeSelector.matchLabels.zone",
        'Invalid value: "-a": spec.nodeSelector.matchLabels.zone in body should match '
        "'^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'",
        id="label-value-pattern",
    ),
    pytest.param(
        {"interfaces": "eth0"},
        "spec.interfaces",
        'Invalid value: "string": spec.interfaces in body must be of type array: "string"',
        id="interfaces-not-a-list",
    ),
    pytest.param(
        {"interfaces": [0]},
        "spec.interfaces[0]",
        'Invalid value: "integer": spec.interfaces[0] in body must be of type string: "integer"',
        id="interface-not-a-string",
    ),
    pytest.param(
        {"externalIPs": "true"},
        "spec.externalIPs",
        'Invalid value: "string": spec.externalIPs in body must be of type boolean: "string"',
        id="externalIPs-not-a-bool",
    ),
    pytest.param(
        {"loadBalancerIPs": 1},
        "spec.loadBalancerIPs",
        'Invalid value: "integer": spec.loadBalancerIPs in body must be of type boolean: "integer"',
        id="loadBalancerIPs-not-a-bool",
    ),
    pytest.param(
        {"serviceSelector": {"matchLabels": ["color=blue"]}},
        "spec.serviceSelector.matchLabels",
        'Invalid value: "array": spec.serviceSelector.matchLabels in body must be of type '
        'object: "array"',
        id="matchLabels-not-a-map",
    ),
    pytest.param(
        {"ipFamilies": ["IPv5"]},
        "spec.ipFamilies[0]",
        'Unsupported value: "IPv5": supported values: "IPv4", "IPv6"',
        id="ipFamilies-unknown",
    ),
    pytest.param(
        {"ipFamilies": []},
        "spec.ipFamilies",
        "Invalid value: 0: spec.ipFamilies in body should have at least 1 items",
        id="ipFamilies-empty",
    ),
    pytest.param(
        {"ipFamilies": ["IPv6", "IPv6"]},
        "spec.ipFamilies[1]",
        'Duplicate value: "IPv6"',
        id="ipFamilies-twice",
    ),
    pytest.param(
        "everything",
        "spec",
        'Invalid value: "string": spec in body must be of type object: "string"',
        id="spec-not-an-object",
    ),
]


@pytest.mark.parametrize(("spec", "field", "message"), BAD_SPECS)
def test_a_bad_spec_is_refused_with_the_servers_message(
    kube: Kube, spec: Any, field: str, message: str
) -> None:
    name = kube.name("bad")
    status = refusal(lambda: kube.custom.create_cluster_custom_object(*POLICY, body(name, spec)))
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == f'{KIND}.{POLICY_GROUP} "{name}" is invalid: {field}: {message}'
    assert status["details"]["causes"] == [
        {"reason": status["details"]["causes"][0]["reason"], "message": message, "field": field}
    ]
    listed: Any = kube.custom.list_cluster_custom_object(*POLICY)
    assert name not in {p["metadata"]["name"] for p in listed["items"]}


def test_kubectl_shows_the_servers_refusal(kube: Kube) -> None:
    name = kube.name("policy1")
    spec = {"serviceSelector": {"matchExpressions": [{"key": "color", "operator": "Is"}]}}
    done = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body(name, spec)))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f'The {KIND} "{name}" is invalid: spec.serviceSelector.matchExpressions[0].operator: '
        'Unsupported value: "Is": supported values: "In", "NotIn", "Exists", "DoesNotExist"'
    )


def test_every_error_of_a_policy_is_named_at_once(kube: Kube) -> None:
    name = kube.name("bad")
    spec = {"externalIPs": "yes", "interfaces": "eth0"}
    status = refusal(lambda: kube.custom.create_cluster_custom_object(*POLICY, body(name, spec)))
    assert sorted(c["field"] for c in status["details"]["causes"]) == [
        "spec.externalIPs",
        "spec.interfaces",
    ]


def test_an_update_to_a_bad_spec_is_refused_and_the_policy_kept(
    kube: Kube, create: Callable[[Any], Obj]
) -> None:
    stored = create(SEED_SPEC)
    name = stored["metadata"]["name"]
    patch = {"spec": {"nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "Near"}]}}}
    status = refusal(lambda: kube.custom.patch_cluster_custom_object(*POLICY, name, patch))
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == (
        "spec.nodeSelector.matchExpressions[0].operator"
    )
    assert read(kube, name)["spec"] == SEED_SPEC


def test_an_unknown_field_is_refused_by_strict_kubectl_and_dropped_otherwise(
    kube: Kube, create: Callable[[Any], Obj]
) -> None:
    name = kube.name("typo")
    manifest = yaml.safe_dump(body(name, {"loadBalancerIps": True}))  # a typo of loadBalancerIPs
    strict = kube.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest
    )
    assert strict.returncode == 1
    assert strict.stderr.strip() == (
        f'Error from server (BadRequest): error when creating "STDIN": {KIND} in version '
        f'"{POLICY_VERSION}" cannot be handled as a {KIND}: strict decoding error: '
        'unknown field "spec.loadBalancerIps"'
    )
    # Without field validation (the Python client's default) the schema prunes it: the policy
    # then announces nothing, which is why kubectl's strict default matters.
    assert create({"loadBalancerIps": True})["spec"] == {}


# Accepted as written, though the agent finds them wrong and says so in a condition.
REPORTED_BY_THE_AGENT = [
    pytest.param(
        {"serviceSelector": {"matchExpressions": [{"key": "something", "operator": "NotIn"}]}},
        COND_BAD_SERVICE_SELECTOR,
        "values: Invalid value: []string(nil): for 'in', 'notin' operators, "
        "values set can't be empty",
        id="seed-notin-without-values",
    ),
    pytest.param(
        {
            "nodeSelector": {
                "matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]
            }
        },
        COND_BAD_NODE_SELECTOR,
        'values: Invalid value: []string{"a"}: values set must be empty for exists and '
        "does not exist",
        id="exists-with-values",
    ),
    pytest.param(
        {"serviceSelector": {"matchLabels": {"not a key": "blue"}}},
        COND_BAD_SERVICE_SELECTOR,
        None,
        id="bad-label-key",
    ),
    pytest.param(
        {"interfaces": ["[eth"]},
        COND_BAD_INTERFACE_REGEX,
        "error parsing regexp: missing closing ]: `[eth`",
        id="bad-regex",
    ),
    pytest.param(
        {"interfaces": ["eth0", "(?=eth)"]},
        COND_BAD_INTERFACE_REGEX,
        "error parsing regexp: invalid or unsupported Perl syntax: `(?=`",
        id="lookahead",
    ),
]


@pytest.mark.parametrize(
    "spec",
    [SEED_SPEC, {}, {"loadBalancerIPs": False}, {**SEED_SPEC, "ipFamilies": ["IPv6"]}],
    ids=["seed", "empty", "off", "ipv6-only"],
)
def test_a_good_policy_is_accepted_as_written(create: Callable[[Any], Obj], spec: Obj) -> None:
    stored = create(spec)
    assert stored["spec"] == spec
    assert stored["metadata"]["generation"] == 1
    assert "status" not in stored


def test_the_seeds_policy_passes_kubectl_dry_run(kube: Kube) -> None:
    manifest = yaml.safe_dump(body(kube.name("policy1"), SEED_SPEC))
    done = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"ciliuml2announcementpolicy.cilium.io/{kube.name('policy1')} created (server dry run)"
    )


@pytest.mark.parametrize(("spec", "condition", "message"), REPORTED_BY_THE_AGENT)
def test_what_the_agent_reports_is_accepted_and_so_is_its_report(
    kube: Kube, create: Callable[[Any], Obj], spec: Obj, condition: str, message: str | None
) -> None:
    stored = create(spec)
    assert stored["spec"] == spec

    # The agent's evaluation of the stored object, and its write of the result.
    row = policy_row(stored)
    assert row is not None
    view = evaluate_policy(row, {}, ["eth0"])
    assert not view.applies
    error = view.checks[condition]
    assert error is not None
    if message is not None:
        assert error == message
    conditions = updated_conditions(row.conditions, view.checks, row.generation, T0)
    assert conditions is not None
    kubernetes_patch(kube.api)(row.name, conditions)
    status = read(kube, row.name)["status"]
    assert status["conditions"] == conditions
    assert {c["type"]: c["message"] for c in conditions}[condition] == error


def test_an_error_longer_than_a_condition_message_still_reaches_the_status(
    kube: Kube, create: Callable[[Any], Obj]
) -> None:
    """A condition message holds at most 32768 bytes; Go's regexp error quotes the whole
    expression, so a long bad one would make every write of the condition fail."""
    stored = create({"interfaces": ["[" + "e" * 40_000]})
    row = policy_row(stored)
    assert row is not None
    view = evaluate_policy(row, {}, ["eth0"])
    conditions = updated_conditions(row.conditions, view.checks, row.generation, T0)
    assert conditions is not None
    kubernetes_patch(kube.api)(row.name, conditions)
    (written,) = read(kube, row.name)["status"]["conditions"]
    assert written["type"] == COND_BAD_INTERFACE_REGEX
    assert written["message"].startswith("error parsing regexp: missing closing ]: `[eee")
    assert len(written["message"].encode()) <= 32768
    # Evaluated again, the agent finds nothing to write (the bounded message is what it keeps).
    again = policy_row(read(kube, row.name))
    assert again is not None
    assert updated_conditions(again.conditions, view.checks, again.generation, T0 + 60) is None


# -- status ------------------------------------------------------------------------------------

GOOD_CONDITION: Obj = {
    "type": COND_BAD_SERVICE_SELECTOR,
    "status": "True",
    "observedGeneration": 1,
    "lastTransitionTime": "2023-05-12T15:39:01Z",
    "reason": "error",
    "message": "values: Invalid value: []string(nil): for 'in', 'notin' operators, "
    "values set can't be empty",
}

# (change to the good condition, field path, the server's message)
BAD_CONDITIONS = [
    pytest.param(
        {"status": "Yes"},
        "status.conditions[0].status",
        'Unsupported value: "Yes": supported values: "True", "False", "Unknown"',
        id="status",
    ),
    pytest.param(
        {"reason": "bad selector"},
        "status.conditions[0].reason",
        'Invalid value: "bad selector": conditions[0].reason in body should match '
        "'^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$'",
        id="reason-pattern",
    ),
    pytest.param(
        {"reason": ""},
        "status.conditions[0].reason",
        'Invalid value: "": conditions[0].reason in body should be at least 1 chars long',
        id="reason-empty",
    ),
    pytest.param(
        {"reason": None},
        "status.conditions[0].reason",
        "Required value",
        id="reason-missing",
    ),
    pytest.param(
        {"type": "io.cilium/Bad Selector"},
        "status.conditions[0].type",
        'Invalid value: "io.cilium/Bad Selector": conditions[0].type in body should match '
        "'^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$'",
        id="type-pattern",
    ),
    pytest.param(
        {"observedGeneration": -1},
        "status.conditions[0].observedGeneration",
        "Invalid value: -1: conditions[0].observedGeneration in body should be greater than or "
        "equal to 0",
        id="observedGeneration-negative",
    ),
    pytest.param(
        {"lastTransitionTime": "2023-05-12 15:39"},
        "status.conditions[0].lastTransitionTime",
        'Invalid value: "2023-05-12 15:39": conditions[0].lastTransitionTime in body must be '
        'of type date-time: "2023-05-12 15:39"',
        id="lastTransitionTime-format",
    ),
    pytest.param(
        {"message": "m" * 32769},
        "status.conditions[0].message",
        "Too long: may not be more than 32768 bytes",
        id="message-too-long",
    ),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_CONDITIONS)
def test_a_bad_condition_is_refused_with_the_servers_message(
    kube: Kube, create: Callable[[Any], Obj], change: Obj, field: str, message: str
) -> None:
    name = create({})["metadata"]["name"]
    condition = {k: v for k, v in (GOOD_CONDITION | change).items() if v is not None}
    status = refusal(lambda: kubernetes_patch(kube.api)(name, [condition]))
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"] == f'{KIND}.{POLICY_GROUP} "{name}" is invalid: {field}: {message}'
    assert [c["field"] for c in status["details"]["causes"]] == [field]


def test_conditions_are_a_map_keyed_by_type(kube: Kube, create: Callable[[Any], Obj]) -> None:
    name = create({})["metadata"]["name"]
    status = refusal(lambda: kubernetes_patch(kube.api)(name, [GOOD_CONDITION, GOOD_CONDITION]))
    assert status["code"] == 422
    assert status["message"] == (
        f'{KIND}.{POLICY_GROUP} "{name}" is invalid: status.conditions[1]: '
        f'Duplicate value: {{"type":"{COND_BAD_SERVICE_SELECTOR}"}}'
    )


def test_spec_and_status_are_written_only_through_their_own_endpoints(
    kube: Kube, create: Callable[[Any], Obj]
) -> None:
    name = create({})["metadata"]["name"]
    # A status in a write of the policy itself is ignored; the spec change is taken.
    written: Any = kube.custom.patch_cluster_custom_object(
        *POLICY,
        name,
        {"spec": {"loadBalancerIPs": True}, "status": {"conditions": [GOOD_CONDITION]}},
    )
    assert (written["spec"], written.get("status")) == ({"loadBalancerIPs": True}, None)
    assert written["metadata"]["generation"] == 2
    # A spec in a write of the status subresource is ignored; the generation stays.
    written = kube.custom.patch_cluster_custom_object_status(
        *POLICY, name, {"spec": {"externalIPs": True}, "status": {"conditions": [GOOD_CONDITION]}}
    )
    assert written["spec"] == {"loadBalancerIPs": True}
    assert written["status"]["conditions"] == [GOOD_CONDITION]
    assert written["metadata"]["generation"] == 2
