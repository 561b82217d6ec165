"""Every invalid configuration value refuses to start the real ``l2agent`` with exactly one line on
stderr, naming the key, the value and what is allowed, and exit code 2 (issue 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

L2AGENT = str(Path(sys.executable).parent / "l2agent")


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # written into a --config-dir
    says: tuple[str, ...] = ()  # key, value and what is allowed, as they must appear


def _flag(key: str, value: str, allowed: str) -> Case:
    return Case(f"flag-{key}={value}", (f"--{key}={value}",), says=(key, f'"{value}"', allowed))


DURATION = "expected a duration such as 15s, 500ms or 1m30s"
BOOL = "expected true or false"

CASES = [
    # durations
    _flag("l2-announcements-lease-duration", "abc", DURATION),
    _flag("l2-announcements-renew-deadline", "-1s", "expected a duration that is not negative"),
    _flag("l2-announcements-retry-period", "5", DURATION),  # a unit is required, as in Go
    _flag("l2-announcements-garp-interval", "0s", "expected a duration above 0s and at most 10s"),
    _flag("agent-liveness-update-interval", "2m", "expected a duration above 0s and at most 1m"),
    # bools
    _flag("enable-l2-announcements", "yes", BOOL),
    _flag("force-device-detection", "2", BOOL),
    # numbers
    _flag("k8s-client-qps", "fast", "expected a number"),
    _flag("k8s-client-qps", "-1", "expected a number that is not negative"),
    _flag("agent-health-port", "70000", "expected a port number, 0 to 65535"),
    _flag("agent-health-port", "http", "expected a whole number"),
    _flag("k8s-client-qps", "inf", "expected a number that is not negative"),
    _flag("k8s-client-burst", "1.5", "expected a whole number"),
    _flag("l2-announcements-garp-count", "11", "expected 1 to 10"),
    # kube-proxy-replacement: only true or false (the reference's other modes are gone)
    _flag("kube-proxy-replacement", "strict", BOOL),
    _flag("kube-proxy-replacement", "True", BOOL),
    # devices
    _flag("devices", "eth0,,eth1", "an interface name is 1-15 bytes"),
    _flag("devices", "a/b", "without '/'"),
    # an unknown flag, with and without a value
    Case("unknown-flag", ("--lease-duration=15s",), says=("--lease-duration", '"15s"', "known flags: --enable-l2-announcements")),
    Case("unknown-bare-flag", ("--no-datapathh",), says=("--no-datapathh", "known flags:")),
    # environment variables: a bad value, and an unknown key
    Case("env-bad-value", env={"L2ANNOUNCER_ENABLE_EXTERNAL_IPS": "on"}, says=("enable-external-ips", "L2ANNOUNCER_ENABLE_EXTERNAL_IPS", '"on"', BOOL)),
    Case("env-unknown", env={"L2ANNOUNCER_LEASE_TIME": "1s"}, says=("L2ANNOUNCER_LEASE_TIME", '"1s"', "known: L2ANNOUNCER_AGENT_HEALTH_PORT, L2ANNOUNCER_AGENT_LIVENESS_UPDATE_INTERVAL")),
    # config directory (a mounted ConfigMap): a bad value, an unknown key, a file that is not text
    Case("dir-bad-value", files={"l2-announcements-retry-period": b"bogus\n"}, says=("l2-announcements-retry-period", '"bogus"', DURATION)),
    Case("dir-unknown-key", files={"lease-time": b"1s"}, says=('"lease-time"', '"1s"', "known keys: enable-l2-announcements")),
    Case("dir-not-utf8", files={"devices": b"\xff\xfeeth0"}, says=("devices", "can't decode byte 0xff", "expected a UTF-8 text file")),
    Case("dir-missing", ("--config-dir=/nonexistent/l2announcer",), says=("config-dir", "/nonexistent/l2announcer", "is not a directory")),
    # a key that needs another
    Case("pod-announcements-without-interface", ("--enable-l2-pod-announcements",), says=("enable-l2-pod-announcements=true", "needs l2-pod-announcements-interface")),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_an_invalid_value_is_one_line_and_exit_code_2(case: Case, tmp_path: Path) -> None:
    args = [L2AGENT, *case.args, f"--state-dir={tmp_path / 'state'}", "--node-name=node1"]
    if case.files:
        config_dir = tmp_path / "config"
        config_dir.mkdir()
        for name, content in case.files.items():
            (config_dir / name).write_bytes(content)
        args.append(f"--config-dir={config_dir}")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("L2ANNOUNCER_") and k not in ("NODE_NAME", "K8S_NODE_NAME")
    }
    done = subprocess.run(args, env={**env, **case.env}, capture_output=True, timeout=60)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert done.stdout == b""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    (line,) = lines
    assert line.startswith("l2agent: ")
    for part in case.says:
        assert part in line, f"{part!r} not in {line!r}"
    assert not (tmp_path / "state").exists(), "nothing is created before the config is valid"
