"""Configuration: precedence flag > env > config dir > default, one-line errors, clamping."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import KEYS, ConfigError, display_value, resolve

BASE_ENV = {"NODE_NAME": "node1"}


def test_defaults_are_the_references() -> None:
    r = resolve({}, BASE_ENV)
    c = r.config
    assert c.enable_l2_announcements is False
    assert (
        c.l2_announcements_lease_duration,
        c.l2_announcements_renew_deadline,
        c.l2_announcements_retry_period,
    ) == (15.0, 5.0, 2.0)
    assert (c.effective_qps, c.effective_burst) == (5.0, 10)
    assert c.k8s_namespace == "kube-system"
    assert c.state_dir == "/run/l2announcer"
    assert c.bpf_root == "/sys/fs/bpf/tc/globals"
    assert (c.l2_announcements_garp_count, c.l2_announcements_garp_interval) == (3, 0.5)
    assert r.warnings == ()
    assert set(r.sources.values()) == {"default", "env"}


def test_precedence_flag_over_env_over_dir_over_default(tmp_path: Path) -> None:
    (tmp_path / "l2-announcements-lease-duration").write_text("30s\n")
    (tmp_path / "l2-announcements-renew-deadline").write_text("10s")
    (tmp_path / "k8s-client-qps").write_text("7")
    env = {
        **BASE_ENV,
        "L2ANNOUNCER_CONFIG_DIR": str(tmp_path),
        "L2ANNOUNCER_L2_ANNOUNCEMENTS_RENEW_DEADLINE": "8s",
        "L2ANNOUNCER_K8S_CLIENT_QPS": "9",
    }
    r = resolve({"k8s-client-qps": "11"}, env)
    assert r.config.l2_announcements_lease_duration == 30.0
    assert r.sources["l2-announcements-lease-duration"] == "config-dir"
    assert r.config.l2_announcements_renew_deadline == 8.0
    assert r.sources["l2-announcements-renew-deadline"] == "env"
    assert r.config.k8s_client_qps == 11.0
    assert r.sources["k8s-client-qps"] == "flag"


def test_node_name_from_node_name_or_k8s_node_name() -> None:
    assert resolve({}, {"K8S_NODE_NAME": "a"}).config.node_name == "a"
    assert resolve({}, {"K8S_NODE_NAME": "a", "NODE_NAME": "b"}).config.node_name == "b"
    assert resolve({"node-name": "c"}, {"NODE_NAME": "b"}).config.node_name == "c"


def test_configmap_dir_skips_its_dot_entries(tmp_path: Path) -> None:
    (tmp_path / "..data").mkdir()
    (tmp_path / "..2026_11_27_00_00_00.1").mkdir()
    (tmp_path / "enable-l2-announcements").write_text("true")
    r = resolve({"config-dir": str(tmp_path)}, BASE_ENV)
    assert r.config.enable_l2_announcements is True


def test_kube_proxy_replacement_enables_external_ips() -> None:
    r = resolve({"kube-proxy-replacement": "true"}, BASE_ENV)
    assert r.config.kube_proxy_replacement is True
    assert r.config.enable_external_ips is True


def test_devices_list_is_space_or_comma_separated() -> None:
    r = resolve({"devices": "eth0 eth+,ens3"}, BASE_ENV)
    assert r.config.devices == ("eth0", "eth+", "ens3")


BAD = [
    (
        "l2-announcements-lease-duration",
        "x",
        'invalid value "x" for l2-announcements-lease-duration (flag '
        "--l2-announcements-lease-duration): expected a duration such as 15s, 500ms or 1m30s",
    ),
    (
        "l2-announcements-retry-period",
        "2",
        'invalid value "2" for l2-announcements-retry-period (flag '
        "--l2-announcements-retry-period): expected a duration such as 15s, 500ms or 1m30s",
    ),
    (
        "l2-announcements-renew-deadline",
        "-1s",
        'invalid value "-1s" for l2-announcements-renew-deadline (flag '
        "--l2-announcements-renew-deadline): expected a duration that is not negative",
    ),
    (
        "enable-l2-announcements",
        "yes",
        'invalid value "yes" for enable-l2-announcements (flag --enable-l2-announcements): '
        "expected true or false",
    ),
    (
        "kube-proxy-replacement",
        "strict",
        'invalid value "strict" for kube-proxy-replacement (flag --kube-proxy-replacement): '
        "expected true or false",
    ),
    (
        "k8s-client-qps",
        "fast",
        'invalid value "fast" for k8s-client-qps (flag --k8s-client-qps): expected a number',
    ),
    (
        "k8s-client-qps",
        "nan",
        'invalid value "nan" for k8s-client-qps (flag --k8s-client-qps): '
        "expected a number that is not negative",
    ),
    (
        "k8s-client-burst",
        "1.5",
        'invalid value "1.5" for k8s-client-burst (flag --k8s-client-burst): '
        "expected a whole number",
    ),
    (
        "l2-announcements-garp-count",
        "0",
        'invalid value "0" for l2-announcements-garp-count (flag '
        "--l2-announcements-garp-count): expected 1 to 10",
    ),
    (
        "l2-announcements-garp-interval",
        "0s",
        'invalid value "0s" for l2-announcements-garp-interval (flag '
        "--l2-announcements-garp-interval): expected a duration above 0s and at most 10s",
    ),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v}" for k, v, _ in BAD])
def test_bad_flag_values_give_one_line(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        resolve({key: value}, BASE_ENV)
    assert str(e.value) == message
    assert "\n" not in str(e.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as e:
        resolve({}, {**BASE_ENV, "L2ANNOUNCER_ENABLE_L2_ANNOUNCEMENTS": "on"})
    assert str(e.value) == (
        'invalid value "on" for enable-l2-announcements (environment variable '
        "L2ANNOUNCER_ENABLE_L2_ANNOUNCEMENTS): expected true or false"
    )


def test_bad_file_value_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "k8s-client-burst").write_text("lots")
    with pytest.raises(ConfigError, match=f"file {tmp_path}/k8s-client-burst"):
        resolve({"config-dir": str(tmp_path)}, BASE_ENV)


def test_unknown_keys_refuse(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown flag --lease-duration"):
        resolve({"lease-duration": "1s"}, BASE_ENV)
    with pytest.raises(ConfigError, match="L2ANNOUNCER_LEASE_TIME"):
        resolve({}, {**BASE_ENV, "L2ANNOUNCER_LEASE_TIME": "1s"})
    (tmp_path / "enable-l2-announcement").write_text("true")
    with pytest.raises(ConfigError, match='unknown configuration key "enable-l2-announcement"'):
        resolve({"config-dir": str(tmp_path)}, BASE_ENV)


def test_missing_config_dir_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        resolve({"config-dir": str(tmp_path / "nope")}, BASE_ENV)


def test_pod_announcements_need_an_interface() -> None:
    with pytest.raises(ConfigError, match="needs l2-pod-announcements-interface"):
        resolve({"enable-l2-pod-announcements": "true"}, BASE_ENV)


P = "--l2-announcements-"
CLAMPS = [
    # (lease, renew, retry) -> (lease, renew, retry), warnings
    (("500ms", "5s", "2s"), (1.0, 0.5, 0.25), 3),
    (("15s", "0", "2s"), (15.0, 1.0, 0.5), 2),
    (("15s", "5s", "0"), (15.0, 5.0, 0.2), 1),
    (("3s", "3s", "200ms"), (3.0, 1.5, 0.2), 1),
    (("15s", "5s", "5s"), (15.0, 5.0, 2.5), 1),
    (("3s", "1s", "200ms"), (3.0, 1.0, 0.2), 0),  # the seed's fast-failover example
]


@pytest.mark.parametrize(("given", "expected", "n_warnings"), CLAMPS)
def test_timer_relations_are_clamped_with_the_references_warnings(
    given: tuple[str, str, str], expected: tuple[float, float, float], n_warnings: int
) -> None:
    lease, renew, retry = given
    r = resolve(
        {
            "l2-announcements-lease-duration": lease,
            "l2-announcements-renew-deadline": renew,
            "l2-announcements-retry-period": retry,
        },
        BASE_ENV,
    )
    c = r.config
    got = (
        c.l2_announcements_lease_duration,
        c.l2_announcements_renew_deadline,
        c.l2_announcements_retry_period,
    )
    assert got == pytest.approx(expected)
    assert len(r.warnings) == n_warnings


def test_clamp_warning_texts() -> None:
    r = resolve({"l2-announcements-lease-duration": "500ms"}, BASE_ENV)
    assert r.warnings == (
        f"{P}lease-duration must be greater than 1s, defaulting to 1s",
        f"{P}lease-duration must be greater than {P}renew-deadline, defaulting to a 2/1 ratio",
        f"{P}renew-deadline must be greater than {P}retry-period * 1.20, "
        f"defaulting {P}retry-period to {P}renew-deadline / 2",
    )


def test_every_key_has_help_and_a_parsable_default() -> None:
    for k in KEYS:
        assert k.help and k.go_name
    c = resolve({}, BASE_ENV).config
    shown = {k.name: display_value(k, c.value(k.name)) for k in KEYS}
    assert shown["l2-announcements-lease-duration"] == "15s"
    assert shown["devices"] == "[]"
    assert shown["enable-l2-announcements"] == "false"


def test_devices_entries_are_checked_as_interface_names() -> None:
    with pytest.raises(
        ConfigError, match=r'invalid value "eth0,,eth1" for devices \(flag --devices\)'
    ):
        resolve({"devices": "eth0,,eth1"}, BASE_ENV)
    with pytest.raises(ConfigError, match="devices entry 'a/b'"):
        resolve({"devices": "a/b"}, BASE_ENV)


def test_a_config_dir_file_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    # Regression: a file with invalid UTF-8 in the config directory escaped as a traceback.
    (tmp_path / "devices").write_bytes(b"\xff\xfeeth0")
    with pytest.raises(ConfigError, match="expected a UTF-8 text file"):
        resolve({"config-dir": str(tmp_path)}, BASE_ENV)


def test_unknown_keys_name_their_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='L2ANNOUNCER_LEASE_TIME="1s"'):
        resolve({}, {**BASE_ENV, "L2ANNOUNCER_LEASE_TIME": "1s"})
    (tmp_path / "lease-time").write_text("1s\n")
    with pytest.raises(ConfigError, match='"lease-time" \\(value "1s"\\)'):
        resolve({"config-dir": str(tmp_path)}, BASE_ENV)
