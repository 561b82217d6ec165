"""bpf.program.retarget_maps: only map references change, and only to the fds they are mapped to."""

from __future__ import annotations

import struct

import pytest

from bpf.program import CompileError, retarget_maps

INSN = struct.Struct("<BBhi")


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return INSN.pack(code, src << 4 | dst, off, imm)


def ld_map(dst: int, fd: int, src: int = 1) -> bytes:
    return insn(0x18, dst, src, 0, fd) + insn(0, 0, 0, 0, 0)


def test_map_references_are_pointed_at_the_new_fds_and_nothing_else_changes() -> None:
    program = (
        insn(0xB7, 0, 0, 0, 7)  # r0 = 7: an immediate that happens to equal a map fd
        + ld_map(1, 7)
        + insn(0x85, 0, 0, 0, 1)  # call map_lookup_elem
        + ld_map(2, 9, src=2)  # BPF_PSEUDO_MAP_VALUE: also a map fd
        + insn(0x18, 3, 0, 0, 7) + insn(0, 0, 0, 0, 0)  # r3 = 7 (64-bit), not a map
        + insn(0x95)
    )  # fmt: skip
    out = retarget_maps(program, {7: 40, 9: 41})
    want = (
        insn(0xB7, 0, 0, 0, 7)
        + ld_map(1, 40)
        + insn(0x85, 0, 0, 0, 1)
        + ld_map(2, 41, src=2)
        + insn(0x18, 3, 0, 0, 7) + insn(0, 0, 0, 0, 0)
        + insn(0x95)
    )  # fmt: skip
    assert out == want


def test_a_reference_to_a_map_not_given_is_refused() -> None:
    with pytest.raises(CompileError, match="did not report"):
        retarget_maps(ld_map(1, 5), {7: 40})


def test_a_program_of_partial_instructions_is_refused() -> None:
    with pytest.raises(CompileError, match="not whole instructions"):
        retarget_maps(b"\x18" * 12, {})
