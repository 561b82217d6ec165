"""Loading the program and opening its pinned maps, without any network."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bpf import program
from bpf.maps import (
    IFACES_MAP_NAME,
    LIVENESS_MAP_NAME,
    RESPONDER_MAP_NAME,
    RESPONDER_V6_MAP_NAME,
    LivenessMap,
    ResponderMap,
    ResponderV6Map,
)
from bpf.syscall import BpfError


def test_load_creates_the_root_and_pins_four_maps(bpf_root: str) -> None:
    nested = f"{bpf_root}/tc/globals"
    prog = program.load(nested)
    try:
        assert sorted(os.listdir(nested)) == sorted(
            [RESPONDER_MAP_NAME, LIVENESS_MAP_NAME, IFACES_MAP_NAME, RESPONDER_V6_MAP_NAME]
        )
        with ResponderMap.open(f"{nested}/{RESPONDER_MAP_NAME}") as m:
            assert (m.info.max_entries, m.info.flags) == (4096, 1)
        with ResponderV6Map.open(f"{nested}/{RESPONDER_V6_MAP_NAME}") as m6:
            assert (m6.info.key_size, m6.info.max_entries, m6.info.flags) == (20, 4096, 1)
            assert m6.add_if_missing("2001:db8::10", 7) is True
            assert m6.items()[0].ip == "2001:db8::10"
    finally:
        prog.close()


def test_a_second_load_reopens_the_pinned_maps_instead_of_recreating_them(bpf_root: str) -> None:
    first = program.load(bpf_root)
    with ResponderMap.open(f"{bpf_root}/{RESPONDER_MAP_NAME}") as m:
        map_id = m.info.id
        assert m.add_if_missing("198.51.100.10", 7) is True
    first.close()
    second = program.load(bpf_root)
    try:
        with ResponderMap.open(f"{bpf_root}/{RESPONDER_MAP_NAME}") as m:
            assert m.info.id == map_id
            assert m.get("198.51.100.10", 7) == 0
            assert m.add_if_missing("198.51.100.10", 7) is False
    finally:
        second.close()


def test_a_root_outside_bpffs_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(program.CompileError, match="not on a BPF filesystem"):
        program.load(str(tmp_path / "root"))
    assert not (tmp_path / "root").exists()


def test_opening_a_missing_pin_or_the_wrong_map_fails_cleanly(bpf_root: str) -> None:
    with pytest.raises(BpfError) as missing:
        ResponderMap.open(f"{bpf_root}/{RESPONDER_MAP_NAME}")
    assert missing.value.errno == errno.ENOENT
    prog = program.load(bpf_root)
    try:
        with pytest.raises(BpfError) as wrong:
            ResponderMap.open(f"{bpf_root}/{LIVENESS_MAP_NAME}")
        assert wrong.value.errno == errno.EINVAL
        with LivenessMap.open(f"{bpf_root}/{LIVENESS_MAP_NAME}") as lv:
            assert (lv.last_stamp(), lv.max_age()) == (0, 0)  # silent until stamped
    finally:
        prog.close()


def test_a_full_responder_map_says_so(bpf_root: str) -> None:
    prog = program.load(bpf_root)
    try:
        with ResponderMap.open(f"{bpf_root}/{RESPONDER_MAP_NAME}") as m:
            for idx in range(1, 17):
                for i in range(256):
                    assert m.add_if_missing(f"198.51.100.{i}", idx)
            assert len(m.items()) == 4096
            with pytest.raises(BpfError, match="is full"):
                m.add_if_missing("203.0.113.1", 1)
            assert m.add_if_missing("198.51.100.1", 1) is False  # present: still fine
            entries = m.items()
            assert entries[0].ip == "198.51.100.0" and entries[0].ifindex == 1
            assert entries[-1].ip == "198.51.100.255" and entries[-1].ifindex == 16
    finally:
        prog.close()
