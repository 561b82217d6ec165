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


def test_info_and_query_layouts() -> None:
    # struct bpf_map_info, up to btf_value_type_id
    assert syscall._MapInfo.ifindex.offset == 40
    assert syscall._MapInfo.netns_dev.offset == 48
    assert syscall._MapInfo.btf_id.offset == 64
    assert syscall._MapInfo.btf_value_type_id.offset == 72
    # struct bpf_prog_info, up to name
    assert syscall._ProgInfo.tag.offset == 8
    assert syscall._ProgInfo.load_time.offset == 40
    assert syscall._ProgInfo.map_ids.offset == 56
    assert syscall._ProgInfo.name.offset == 64
    # BPF_PROG_QUERY
    assert syscall._QueryAttr.prog_ids.offset == 16
    assert syscall._QueryAttr.prog_cnt.offset == 24
    assert syscall._QueryAttr.prog_attach_flags.offset == 32
    assert syscall._QueryAttr.revision.offset == 56
