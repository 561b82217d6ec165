"""The ctypes mirrors of union bpf_attr must match the kernel's layout byte for byte."""

from __future__ import annotations

import ctypes

from bpf import syscall


def test_attr_sizes_and_offsets() -> None:
    assert ctypes.sizeof(syscall._ElemAttr) == 32
    assert syscall._ElemAttr.key.offset == 8
    assert syscall._ElemAttr.value.offset == 16
    assert syscall._ElemAttr.flags.offset == 24
    assert syscall._ObjGetAttr.file_flags.offset == 12
    assert syscall._BatchAttr.count.offset == 32
    assert syscall._BatchAttr.map_fd.offset == 36
    assert syscall._BatchAttr.elem_flags.offset == 40
    assert syscall._InfoAttr.info.offset == 8
    assert syscall._MapInfo.name.offset == 24
