"""l2dbg config --all, l2dbg status and the errors of l2dbg bpf l2-responder list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import resolve
from agent.config_table import write_config
from common.tables import CATALOGUE, DEVICES, HEALTH, L2_ANNOUNCE, LEASES
from common.tables.devices import Device
from common.tables.health import Health
from common.tables.l2_announce import L2AnnounceEntry, Origin
from common.tables.leases import Lease
from statedb import Database, Status, StatusKind
from tests.unit.dbg.fixtures import invoke


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    db = Database.open(tmp_path / "statedb.sqlite", CATALOGUE.values())
    r = resolve(
        {"enable-l2-announcements": "true", "kube-proxy-replacement": "true"},
        {"NODE_NAME": "node2"},
    )
    write_config(db, r.config, r.sources)
    with db.write_txn(DEVICES, HEALTH, L2_ANNOUNCE, LEASES) as txn:
        txn.upsert(DEVICES, Device(2, "eth0", selected=True))
        txn.upsert(DEVICES, Device(1, "lo"))
        txn.upsert(HEALTH, Health("devices", "OK", "2 devices, 1 selected (eth0)", 1.0))
        txn.upsert(HEALTH, Health("l2-responder", "Degraded", "garp failed", 1.0))
        txn.upsert(LEASES, Lease("cilium-l2announce-default-service-red", "node2", 15))
        txn.upsert(LEASES, Lease("cilium-l2announce-default-service-blue", "node1", 15))
        txn.upsert(
            L2_ANNOUNCE,
            L2AnnounceEntry(
                "198.51.100.10",
                "eth0",
                (Origin("default", "service-red"),),
                Status(StatusKind.DONE, "", 1.0),
            ),
        )
    yield tmp_path
    db.close()


def run(*args: str) -> tuple[int, str, str]:
    r = invoke(list(args))
    return r.code, r.stdout, r.stderr


def test_config_all_is_the_references_layout(state: Path) -> None:
    code, out, _ = run("config", "--all", "--state-dir", str(state))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "#### Read-only configurations ####"
    assert lines[-1] == "##### Read-write configurations #####"
    assert "EnableL2Announcements             : true" in lines
    assert "KubeProxyReplacement              : true" in lines
    assert "EnableExternalIPs                 : true" in lines  # forced on by KPR
    assert "L2AnnouncerLeaseDuration          : 15s" in lines
    names = [line.split(" :")[0].rstrip() for line in lines[1:-1]]
    assert names == sorted(names, key=str.encode)


def test_config_as_json(state: Path) -> None:
    code, out, _ = run("config", "-o", "json", "--state-dir", str(state))
    assert code == 0
    assert '"L2AnnouncerRenewDeadline": "5s"' in out


def test_status_one_screen(state: Path) -> None:
    code, out, _ = run("status", "--state-dir", str(state))
    assert code == 0, out
    assert "Node:                 node2" in out
    assert "Selected devices:     eth0" in out
    assert "Leases held:          1\n  cilium-l2announce-default-service-red" in out
    assert "Leases followed:      1" in out
    assert "198.51.100.10" in out and "done" in out
    assert "l2-responder" in out and "Degraded" in out and "garp failed" in out


def test_missing_database_is_one_line_exit_1(tmp_path: Path) -> None:
    for args in (("config", "--all"), ("status",)):
        code, _, err = run(*args, "--state-dir", str(tmp_path))
        assert code == 1
        assert err.startswith("l2dbg: no state database at") and err.count("\n") == 1


def test_bpf_list_without_a_map_is_one_line(tmp_path: Path) -> None:
    code, _, err = run("bpf", "l2-responder", "list", "--bpf-root", str(tmp_path))
    assert code == 1
    assert err == (
        f"l2dbg: no responder map at {tmp_path}/cilium_l2_responder_v4 (is l2agent running with "
        "l2 announcements enabled? use --bpf-root or L2ANNOUNCER_BPF_ROOT)\n"
    )
