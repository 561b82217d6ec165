"""Policy errors and condition changes are logged once each, at warning level, in the reference's
wording, with what the agent does meanwhile; the log line's layout is logrus's."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.announcer.policy_log import CLEARED_MESSAGE, ERROR_MESSAGE, PolicyLog
from agent.logfmt import LogfmtFormatter
from agent.policy.evaluate import COND_BAD_INTERFACE_REGEX
from agent.policy.last_valid import LastValidPolicies
from common.tables.policies import Policy

NODE = {"kubernetes.io/hostname": "node1"}
DEVICES = ["eth0"]
REGEX_ERROR = "error parsing regexp: missing closing ]: `[0-`"


def pol(generation: int, interfaces: tuple[str, ...], conditions: Any = None) -> Policy:
    return Policy("policy1", generation, None, None, interfaces, False, True, conditions)


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "l2announcer.announcer"]


def pass_(memory: LastValidPolicies, plog: PolicyLog, *policies: Policy) -> None:
    plog.update(policies, memory.evaluate(policies, NODE, DEVICES))


def test_an_error_is_logged_once_then_its_fix_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    memory, plog = LastValidPolicies(), PolicyLog()
    pass_(memory, plog, pol(1, ("^eth[0-9]+",)))
    assert warnings(caplog) == [], "a valid policy logs nothing"
    for _ in range(5):  # every pass of the announcer sees the same error
        pass_(memory, plog, pol(2, ("eth[0-",)))
    (error,) = warnings(caplog)
    assert error.levelno == logging.WARNING
    assert error.getMessage() == ERROR_MESSAGE == "Error processing policy event"
    line = LogfmtFormatter().format(error)
    assert line.split(" ", 1)[1] == (
        'level=warning msg="Error processing policy event" '
        "condition=io.cilium/bad-interface-regex "
        'error="error parsing regexp: missing closing ]: `[0-`" generation=2 '
        'keeping="the last valid version (generation 1)" policy=policy1 subsys=announcer'
    )
    caplog.clear()
    pass_(memory, plog, pol(3, ("eth[",)))  # another typo: another message
    (again,) = warnings(caplog)
    assert "missing closing ]: `[`" in LogfmtFormatter().format(again)
    caplog.clear()
    for _ in range(3):
        pass_(memory, plog, pol(4, ("^eth0$",)))
    (cleared,) = warnings(caplog)
    assert cleared.levelno == logging.WARNING and cleared.getMessage() == CLEARED_MESSAGE
    assert "condition=io.cilium/bad-interface-regex" in LogfmtFormatter().format(cleared)


def test_without_a_valid_version_the_line_says_the_policy_is_not_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory, plog = LastValidPolicies(), PolicyLog()
    pass_(memory, plog, pol(1, ("eth[0-",)))
    (error,) = warnings(caplog)
    assert "keeping=\"nothing: no valid version seen since this agent started, the policy is " \
        "not applied\"" in LogfmtFormatter().format(error)  # fmt: skip


def test_a_condition_set_before_this_agent_started_is_logged_when_cleared(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory, plog = LastValidPolicies(), PolicyLog()
    carried = [{"type": COND_BAD_INTERFACE_REGEX, "status": "True", "message": REGEX_ERROR}]
    pass_(memory, plog, pol(2, ("^eth0$",), carried))
    assert [r.getMessage() for r in warnings(caplog)] == [CLEARED_MESSAGE]
    caplog.clear()
    pass_(memory, plog, pol(2, ("^eth0$",), carried))  # the status write not seen back yet
    assert warnings(caplog) == []


def test_a_deleted_policy_logs_afresh_when_created_again(caplog: pytest.LogCaptureFixture) -> None:
    memory, plog = LastValidPolicies(), PolicyLog()
    pass_(memory, plog, pol(1, ("eth[0-",)))
    pass_(memory, plog)
    pass_(memory, plog, pol(1, ("eth[0-",)))
    assert [r.getMessage() for r in warnings(caplog)] == [ERROR_MESSAGE, ERROR_MESSAGE]


def test_log_fields_quote_only_what_needs_it() -> None:
    record = logging.LogRecord("l2announcer.leases", logging.INFO, "", 0, "m", None, None)
    record.fields = {"a": "plain-value_1.2/x", "b": "two words", "c": 'q"uote'}
    line = LogfmtFormatter().format(record)
    assert line.endswith('msg="m" a=plain-value_1.2/x b="two words" c="q\\"uote" subsys=klog')
