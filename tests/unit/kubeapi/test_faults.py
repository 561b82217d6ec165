"""Fault rules: matching, triggers, rendered answers, stalls released by heal, thread safety."""

from __future__ import annotations

import json
import threading

import pytest

from lab.kubeapi.auth import service_account_user
from lab.kubeapi.faults import (
    PRESETS,
    CommitThenDelay,
    CommitThenFail,
    Delay,
    Drop,
    ErrorAnswer,
    FaultInjector,
    Match,
    Stall,
    WatchEffect,
    effect_from_json,
    effect_to_json,
    render_answer,
)
from lab.kubeapi.pipeline import FaultAction, RequestInfo
from tests.unit.kubeapi.infos import lease_info

NODE1 = service_account_user("kube-system", "node1")
NODE2 = service_account_user("kube-system", "node2")
LEASE = "cilium-l2announce-default-red"


def lease(verb: str, name: str = LEASE, ns: str = "kube-system") -> RequestInfo:
    return lease_info(verb, name, ns)


def service_status(verb: str = "update") -> RequestInfo:
    return RequestInfo(
        method="PUT",
        path="/api/v1/namespaces/default/services/red/status",
        verb=verb,
        api_version="v1",
        resource="services",
        subresource="status",
        namespace="default",
        name="red",
    )


def body(action: FaultAction | None) -> dict[str, object]:
    assert action is not None
    raw = action.body
    assert raw.endswith(b"\n")
    return dict(json.loads(raw))


# -- matching ------------------------------------------------------------------------------------


def test_no_rules_no_faults() -> None:
    faults = FaultInjector()
    assert faults.before(NODE1, lease("get")) is None
    assert faults.watch_fault(NODE1, lease("watch")) is None


@pytest.mark.parametrize(
    ("match", "user", "info", "hit"),
    [
        (Match.build(user=NODE2.name), NODE2, lease("get"), True),
        (Match.build(user=NODE2.name), NODE1, lease("get"), False),
        (Match.build(user="system:serviceaccount:kube-system:*"), NODE1, lease("get"), True),
        (Match.build(verb="update"), NODE1, lease("get"), False),
        (Match.build(verb=["update", "create"]), NODE1, lease("create"), True),
        (Match.build(resource="leases", name=LEASE), NODE1, lease("update"), True),
        (Match.build(resource="leases", name="other"), NODE1, lease("update"), False),
        (Match.build(resource="leases", namespace="default"), NODE1, lease("update"), False),
        (Match.build(api_group="coordination.k8s.io"), NODE1, lease("get"), True),
        (Match.build(api_group=""), NODE1, lease("get"), False),
        (Match.build(resource="services"), NODE1, service_status(), True),
        (Match.build(resource="services/status"), NODE1, service_status(), True),
        (Match.build(resource="services", subresource=""), NODE1, service_status(), False),
        (Match.build(resource="leases/status"), NODE1, lease("update"), False),
    ],
)
def test_match(match: Match, user: object, info: RequestInfo, hit: bool) -> None:
    faults = FaultInjector()
    faults.add(Drop("reset"), match)
    assert (faults.before(user, info) is not None) is hit  # type: ignore[arg-type]


def test_first_rule_by_priority_then_age_wins() -> None:
    faults = FaultInjector()
    faults.add(Delay(0.1))
    faults.add(Drop("refuse"))
    faults.add(ErrorAnswer("internal"), priority=5)
    action = faults.before(NODE1, lease("get"))
    assert action is not None and action.status == 500


# -- triggers ------------------------------------------------------------------------------------


def test_times_limits_the_rule_to_the_next_n_matching_requests() -> None:
    faults = FaultInjector()
    rule = faults.add(ErrorAnswer("conflict"), Match.build(verb="update"), times=2)
    assert faults.before(NODE1, lease("get")) is None  # not matching: does not count
    assert faults.before(NODE1, lease("update")) is not None
    assert faults.before(NODE2, lease("update")) is not None
    assert faults.before(NODE1, lease("update")) is None
    view = faults.rule(rule)
    assert view is not None and view.hits == 2 and view.spent


def test_skip_lets_the_first_matches_through() -> None:
    faults = FaultInjector()
    faults.add(Drop("reset"), Match.build(verb="update"), skip=2, times=1)
    results = [faults.before(NODE1, lease("update")) for _ in range(4)]
    assert [r is not None for r in results] == [False, False, True, False]


def test_until_removed_and_remove() -> None:
    faults = FaultInjector()
    rule = faults.add(Drop("refuse"))
    for _ in range(100):
        assert faults.before(NODE1, lease("get")) is not None
    assert faults.remove(rule)
    assert not faults.remove(rule)
    assert faults.before(NODE1, lease("get")) is None


def test_probability_is_seeded_and_reproducible() -> None:
    def run(seed: int) -> list[bool]:
        faults = FaultInjector(seed=seed)
        faults.add(Drop("reset"), probability=0.3)
        return [faults.before(NODE1, lease("get")) is not None for _ in range(200)]

    first = run(7)
    assert first == run(7)
    assert 20 < sum(first) < 100
    assert run(8) != first


def test_duration_window_uses_the_injected_clock() -> None:
    now = [100.0]
    faults = FaultInjector(clock=lambda: now[0])
    faults.add(ErrorAnswer("unavailable"), duration=5.0)
    assert faults.before(NODE1, lease("get")) is not None
    now[0] = 105.0
    assert faults.before(NODE1, lease("get")) is None


def test_bad_trigger_values_are_refused() -> None:
    faults = FaultInjector()
    with pytest.raises(ValueError):
        faults.add(Drop(), times=0)
    with pytest.raises(ValueError):
        faults.add(Drop(), probability=1.5)
    with pytest.raises(ValueError):
        faults.error("no-such-preset")


# -- effects -------------------------------------------------------------------------------------


def test_delay_with_jitter_stays_within_bounds() -> None:
    faults = FaultInjector(seed=1)
    faults.add(Delay(0.2, jitter=0.1))
    for _ in range(50):
        action = faults.before(NODE1, lease("get"))
        assert action is not None and action.kind == "delay"
        assert 0.2 <= action.seconds <= 0.3


def test_internal_error_status() -> None:
    action = render_answer(ErrorAnswer("internal", message="etcd gone"), NODE1, lease("get"))
    assert action.kind == "respond" and action.status == 500
    assert action.content_type == "application/json"
    assert body(action) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Internal error occurred: etcd gone",
        "reason": "InternalError",
        "details": {"causes": [{"message": "etcd gone"}]},
        "code": 500,
    }


def test_server_timeout_carries_retry_after_in_body_and_header() -> None:
    action = render_answer(ErrorAnswer("server-timeout"), NODE1, lease("update"))
    assert action.status == 500 and action.headers["Retry-After"] == "2"
    status = body(action)
    assert status["reason"] == "ServerTimeout"
    assert status["message"] == (
        "The update operation against leases.coordination.k8s.io could not be completed at this "
        "time, please try again."
    )
    assert status["details"] == {
        "name": "update",
        "group": "coordination.k8s.io",
        "kind": "leases",
        "retryAfterSeconds": 2,
    }


def test_timeout_and_unavailable() -> None:
    timeout = render_answer(ErrorAnswer("timeout"), NODE1, lease("get"))
    assert timeout.status == 504
    assert (
        body(timeout)["message"] == "Timeout: request did not complete within the allotted timeout"
    )
    unavailable = render_answer(ErrorAnswer("unavailable", message="down"), NODE1, lease("get"))
    assert unavailable.status == 503 and body(unavailable)["reason"] == "ServiceUnavailable"


def test_three_flavours_of_429() -> None:
    json_429 = render_answer(ErrorAnswer("too-many-requests", retry_after=3), NODE1, lease("get"))
    assert json_429.status == 429 and json_429.headers["Retry-After"] == "3"
    assert body(json_429)["details"] == {"retryAfterSeconds": 3}
    apf = render_answer(ErrorAnswer("apf-429"), NODE1, lease("get"))
    assert apf.content_type.startswith("text/plain")
    assert apf.body == b"Too many requests, please try again later.\n"
    assert apf.headers["Retry-After"] == "1"
    shutdown = render_answer(ErrorAnswer("shutdown-429"), NODE1, lease("get"))
    assert shutdown.body == b"The apiserver is shutting down, please try again later.\n"
    assert shutdown.headers["Retry-After"] == "5" and shutdown.headers["Connection"] == "close"


def test_conflict_names_the_object_like_the_real_server() -> None:
    status = body(render_answer(ErrorAnswer("conflict"), NODE1, lease("update")))
    assert status["code"] == 409 and status["reason"] == "Conflict"
    assert status["message"] == (
        f'Operation cannot be fulfilled on leases.coordination.k8s.io "{LEASE}": the object has '
        "been modified; please apply your changes to the latest version and try again"
    )
    assert status["details"] == {"name": LEASE, "group": "coordination.k8s.io", "kind": "leases"}


def test_not_found_has_code_404_for_the_elector() -> None:
    status = body(render_answer(ErrorAnswer("not-found"), NODE1, lease("get")))
    assert status["code"] == 404
    assert status["message"] == f'leases.coordination.k8s.io "{LEASE}" not found'


def test_forbidden_and_unauthorized() -> None:
    forbidden = body(render_answer(ErrorAnswer("forbidden"), NODE1, lease("get")))
    assert forbidden["message"] == (
        f'leases.coordination.k8s.io "{LEASE}" is forbidden: User '
        '"system:serviceaccount:kube-system:node1" cannot get resource "leases" in API group '
        '"coordination.k8s.io" in the namespace "kube-system"'
    )
    assert body(render_answer(ErrorAnswer("unauthorized"), NODE1, lease("get")))["code"] == 401


def test_html_and_text_answers() -> None:
    html = render_answer(ErrorAnswer("html", status=502), NODE1, lease("get"))
    assert html.status == 502 and html.content_type == "text/html"
    assert b"<title>502 Bad Gateway</title>" in html.body
    text = render_answer(
        ErrorAnswer("text", status=503, message="upstream gone"), NODE1, lease("get")
    )
    assert text.status == 503 and text.body == b"upstream gone\n"
    custom = body(
        render_answer(
            ErrorAnswer("status", status=418, reason="Teapot", message="m"), NODE1, lease("get")
        )
    )
    assert (custom["code"], custom["reason"], custom["message"]) == (418, "Teapot", "m")


def test_every_preset_renders() -> None:
    for preset in PRESETS:
        action = render_answer(ErrorAnswer(preset), NODE1, lease("update"))
        assert action.kind == "respond" and action.status >= 400, preset


def test_commit_then_fail_keeps_the_answer_and_changes_the_kind() -> None:
    faults = FaultInjector()
    faults.add(CommitThenFail(ErrorAnswer("timeout")), Match.build(verb="update"), times=1)
    faults.add(CommitThenFail(None), Match.build(verb="create"), times=1)
    answered = faults.before(NODE1, lease("update"))
    assert answered is not None and answered.kind == "commit_then_fail" and answered.status == 504
    dropped = faults.before(NODE1, lease("create"))
    assert dropped is not None and dropped.kind == "commit_then_fail" and dropped.status == 0


def test_commit_then_delay_carries_its_seconds_with_jitter_drawn() -> None:
    faults = FaultInjector(seed=7)
    faults.add(CommitThenDelay(0.5, jitter=0.25), Match.build(verb="update"), times=2)
    delays = [faults.before(NODE1, lease("update")) for _ in range(2)]
    for action in delays:
        assert action is not None and action.kind == "commit_then_delay"
        assert 0.5 <= action.seconds <= 0.75
    assert faults.before(NODE1, lease("update")) is None, "spent after two"
    assert faults.rule(faults.commit_then_delay(0.1)) is not None


@pytest.mark.parametrize("effect", [Delay(-1), CommitThenDelay(0.1, jitter=-0.5)])
def test_negative_delays_are_refused(effect: object) -> None:
    with pytest.raises(ValueError, match="a delay's seconds and jitter must be >= 0"):
        FaultInjector().add(effect)  # type: ignore[arg-type]


# -- stalls and partitions -----------------------------------------------------------------------


def test_stall_is_released_when_the_rule_is_removed() -> None:
    faults = FaultInjector()
    rule = faults.add(Stall(after_release="continue"), Match.build(user=NODE2.name), times=1)
    action = faults.before(NODE2, lease("get"))
    assert action is not None and action.kind == "stall" and action.after_release == "continue"
    assert action.release is not None and not action.release.is_set()
    # Spent (times=1) but still holding the stalled request until removed.
    assert faults.before(NODE2, lease("get")) is None
    assert not action.release.is_set()
    faults.remove(rule)
    assert action.release.is_set()


def test_stall_partition_isolates_one_user_and_heal_releases_it() -> None:
    faults = FaultInjector()
    faults.partition(NODE2.name, mode="stall")
    stalled = faults.before(NODE2, lease("update"))
    stream = faults.watch_fault(NODE2, lease("watch"))
    assert stalled is not None and stalled.kind == "stall" and stalled.after_release == "reset"
    assert stream is not None and stream.kind == "stall"
    assert faults.before(NODE1, lease("update")) is None
    assert faults.watch_fault(NODE1, lease("watch")) is None
    assert faults.partitioned() == [NODE2.name]
    assert faults.heal(NODE2.name) == 2
    assert stalled.release is not None and stalled.release.is_set()
    assert stream.release is not None and stream.release.is_set()
    assert faults.before(NODE2, lease("update")) is None
    assert faults.partitioned() == []


def test_partition_wins_over_ordinary_rules() -> None:
    faults = FaultInjector()
    faults.add(Delay(0.1))
    faults.partition(NODE2.name, mode="refuse")
    action = faults.before(NODE2, lease("get"))
    assert action is not None and action.kind == "refuse"
    stream = faults.watch_fault(NODE2, lease("watch"))
    assert stream is not None and stream.kind == "reset"


def test_partition_modes() -> None:
    faults = FaultInjector()
    faults.partition(NODE2.name, mode="writes-fail")
    assert faults.before(NODE2, lease("get")) is None
    failed = faults.before(NODE2, lease("update"))
    assert failed is not None and failed.status == 500
    faults.partition(NODE2.name, mode="watch-stall")  # replaces the previous partition
    assert faults.before(NODE2, lease("update")) is None
    stream = faults.watch_fault(NODE2, lease("watch"))
    assert stream is not None and stream.kind == "stall"
    with pytest.raises(ValueError):
        faults.partition(NODE2.name, mode="sideways")  # type: ignore[arg-type]


def test_partition_rejects_an_unknown_on_heal_and_keeps_the_old_partition() -> None:
    faults = FaultInjector()
    faults.partition(NODE2.name, mode="refuse")
    with pytest.raises(ValueError, match="on_heal must be 'reset' or 'continue'"):
        faults.partition(NODE2.name, on_heal="later")  # type: ignore[arg-type]
    assert len(faults.rules()) == 2 and faults.partitioned() == [NODE2.name]


def test_heal_everyone_leaves_other_rules() -> None:
    faults = FaultInjector()
    keep = faults.add(Delay(0.01))
    faults.partition(NODE1.name)
    faults.partition(NODE2.name, mode="reset")
    assert faults.heal() == 4
    assert [r.id for r in faults.rules()] == [keep]


def test_clear_releases_everything() -> None:
    faults = FaultInjector()
    faults.add(Stall())
    action = faults.before(NODE1, lease("get"))
    assert action is not None and action.release is not None
    assert faults.clear() == 1
    assert action.release.is_set()


def test_stall_with_duration_is_released_by_a_timer() -> None:
    faults = FaultInjector()
    faults.add(Stall(), duration=0.05)
    action = faults.before(NODE1, lease("get"))
    assert action is not None and action.release is not None
    assert action.release.wait(timeout=10.0)


# -- watch faults --------------------------------------------------------------------------------


def test_watch_faults_only_apply_to_streams() -> None:
    faults = FaultInjector()
    faults.add(WatchEffect("expire"), Match.build(resource="leases"), skip=3, times=1)
    assert faults.before(NODE1, lease("watch")) is None
    assert [faults.watch_fault(NODE1, lease("watch")) for _ in range(3)] == [None, None, None]
    fault = faults.watch_fault(NODE1, lease("watch"))
    assert fault is not None and fault.kind == "expire"
    assert faults.watch_fault(NODE1, lease("watch")) is None


@pytest.mark.parametrize("kind", ["end", "reset", "stall", "expire"])
def test_each_watch_fault_kind(kind: str) -> None:
    faults = FaultInjector()
    faults.add(WatchEffect(kind))  # type: ignore[arg-type]
    fault = faults.watch_fault(NODE1, lease("watch"))
    assert fault is not None and fault.kind == kind
    assert (fault.release is not None) is (kind == "stall")


# -- serialization and concurrency ---------------------------------------------------------------


@pytest.mark.parametrize(
    "effect",
    [
        Delay(0.5, 0.1),
        ErrorAnswer("server-timeout", retry_after=4),
        CommitThenFail(ErrorAnswer("internal")),
        CommitThenFail(None),
        CommitThenDelay(0.3, 0.1),
        Drop("reset"),
        Drop("refuse"),
        Stall("continue"),
        WatchEffect("stall", "reset"),
        WatchEffect("end"),
    ],
)
def test_effect_json_round_trip(effect: object) -> None:
    data = effect_to_json(effect)  # type: ignore[arg-type]
    assert effect_from_json(json.loads(json.dumps(data))) == effect


def test_bad_effect_json_is_refused() -> None:
    for data in (
        {"type": "explode"},
        {"type": "error", "preset": "nope"},
        {"type": "watch", "kind": "x"},
        {"type": "stall", "after_release": "later"},
    ):
        with pytest.raises(ValueError):
            effect_from_json(data)


def test_match_json_round_trip() -> None:
    match = Match.build(
        user=["a", "b"], verb="update", resource="services/status", namespace="d", name="n"
    )
    assert Match.from_json(match.to_json()) == match
    with pytest.raises(ValueError):
        Match.from_json({"usr": "typo"})


def test_counted_rule_fires_exactly_n_times_under_concurrency() -> None:
    faults = FaultInjector()
    rule = faults.add(ErrorAnswer("conflict"), times=500)
    fired = []
    lock = threading.Lock()

    def worker() -> None:
        n = sum(faults.before(NODE1, lease("update")) is not None for _ in range(250))
        with lock:
            fired.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fired) == 500
    view = faults.rule(rule)
    assert view is not None and view.hits == 500 and view.seen == 500


def test_still_stalled_follows_the_rule_not_its_count() -> None:
    faults = FaultInjector()
    rule = faults.add(Stall(), Match.build(user=NODE2.name), times=1)
    assert faults.before(NODE2, lease("get")) is not None
    assert faults.still_stalled(NODE2, lease("get"))
    assert not faults.still_stalled(NODE1, lease("get"))
    faults.remove(rule)
    assert not faults.still_stalled(NODE2, lease("get"))


def test_partition_is_still_stalled_until_healed() -> None:
    faults = FaultInjector()
    faults.partition(NODE2.name, mode="stall")
    assert faults.still_stalled(NODE2, lease("update"))
    faults.partition(NODE2.name, mode="refuse")  # a refuse partition holds nothing
    assert not faults.still_stalled(NODE2, lease("update"))
    faults.heal(NODE2.name)
    assert not faults.still_stalled(NODE2, lease("update"))
