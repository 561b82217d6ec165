from __future__ import annotations

from agent.policy.conditions import updated_conditions
from agent.policy.evaluate import COND_BAD_NODE_SELECTOR, COND_BAD_SERVICE_SELECTOR

SEED_MSG = (
    "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
)
T0 = 1683906000.0  # 2023-05-12T15:40:00Z


def test_nothing_is_written_to_say_false_about_a_condition_that_does_not_exist() -> None:
    assert updated_conditions(None, {COND_BAD_NODE_SELECTOR: None}, 1, T0) is None


def test_an_error_creates_the_condition_as_the_seed_shows() -> None:
    got = updated_conditions(None, {COND_BAD_SERVICE_SELECTOR: SEED_MSG}, 1, T0)
    assert got == [
        {
            "type": "io.cilium/bad-service-selector",
            "status": "True",
            "observedGeneration": 1,
            "lastTransitionTime": "2023-05-12T15:40:00Z",
            "reason": "error",
            "message": SEED_MSG,
        }
    ]


def test_the_same_error_again_writes_nothing() -> None:
    first = updated_conditions(None, {COND_BAD_SERVICE_SELECTOR: SEED_MSG}, 1, T0)
    assert updated_conditions(first, {COND_BAD_SERVICE_SELECTOR: SEED_MSG}, 1, T0 + 60) is None


def test_fixing_the_policy_sets_false_with_an_empty_message() -> None:
    first = updated_conditions(None, {COND_BAD_SERVICE_SELECTOR: SEED_MSG}, 1, T0)
    fixed = updated_conditions(first, {COND_BAD_SERVICE_SELECTOR: None}, 2, T0 + 60)
    assert fixed is not None
    (c,) = fixed
    assert (c["status"], c["message"], c["observedGeneration"]) == ("False", "", 2)
    assert c["lastTransitionTime"] == "2023-05-12T15:41:00Z"
    assert updated_conditions(fixed, {COND_BAD_SERVICE_SELECTOR: None}, 2, T0 + 120) is None


def test_a_new_generation_with_the_same_error_keeps_the_transition_time() -> None:
    first = updated_conditions(None, {COND_BAD_SERVICE_SELECTOR: SEED_MSG}, 1, T0)
    again = updated_conditions(first, {COND_BAD_SERVICE_SELECTOR: SEED_MSG}, 2, T0 + 60)
    assert again is not None
    assert again[0]["observedGeneration"] == 2
    assert again[0]["lastTransitionTime"] == "2023-05-12T15:40:00Z"


def test_other_conditions_are_kept() -> None:
    other = {"type": "example.com/Ready", "status": "True", "reason": "Fine", "message": "",
             "lastTransitionTime": "2023-01-01T00:00:00Z", "observedGeneration": 1}  # fmt: skip
    got = updated_conditions([other], {COND_BAD_SERVICE_SELECTOR: SEED_MSG}, 1, T0)
    assert got is not None and got[0] == other and len(got) == 2


def test_a_message_longer_than_a_condition_holds_is_cut_on_a_character() -> None:
    # metav1.Condition messages hold 32768 bytes; the server refuses a longer one (422).
    regex_error = "error parsing regexp: missing closing ]: `[" + "é" * 20_000 + "`"
    got = updated_conditions(None, {COND_BAD_SERVICE_SELECTOR: regex_error}, 1, T0)
    assert got is not None
    message = got[0]["message"]
    assert len(message.encode()) <= 32768
    assert message.endswith("é ...") and regex_error.startswith(message.removesuffix(" ..."))
    # The cut message is what the policy then carries: nothing more to write.
    assert updated_conditions(got, {COND_BAD_SERVICE_SELECTOR: regex_error}, 1, T0 + 60) is None
