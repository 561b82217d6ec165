"""Other people's BPF objects where ours go: a Cilium-like map pinned at our path, and programs of
someone else's on an interface's ingress (a tc bpf filter, or a tcx program).

The programs are the smallest that load (they pass every frame); what matters to the agent is
only that they are there. They are compiled by bcc against the header tree the package ships
(as bpf.program does), so these helpers need no kernel headers either.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bpf import syscall
from bpf.program import shipped_headers
from tests.privileged.datapath.lab import in_netns, sh

BPF_PROG_ATTACH = 8

# Cilium's bpf_host declares its responder map with these very names and sizes.
_CILIUM_LIKE_MAP = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
struct l2_responder_v4_key { __u32 ip4; __u32 ifindex; };
struct l2_responder_v4_stats { __u64 responses_sent; };
BPF_TABLE_PINNED("hash", struct l2_responder_v4_key, struct l2_responder_v4_stats,
                 cilium_l2_responder_v4, 4096, PIN, BPF_F_NO_PREALLOC);
int cil_from_netdev(struct __sk_buff *skb) { return TC_ACT_OK; }
"""

_PASS_ALL = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
int cil_from_netdev(struct __sk_buff *skb) { return TC_ACT_OK; }
"""


@contextmanager
def _compiled(text: str, cflags: list[str] | None = None) -> Iterator[Any]:
    from bcc import BPF

    with shipped_headers():
        b = BPF(text=text.encode(), cflags=cflags or [])
    try:
        yield b
    finally:
        b.cleanup()  # our fds only: pins and attachments stay in the kernel


def cilium_like_map(path: str) -> int:
    """Pin a map like Cilium's at ``path`` (same name, sizes, flags and key/value type names, with
    its program's BTF); returns its id."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with _compiled(_CILIUM_LIKE_MAP, [f'-DPIN="{path}"']):
        pass
    return map_id(path)


def map_without_btf(path: str) -> int:
    """Pin a map of our responder's layout but without BTF (as a Go agent creates one)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sh("bpftool", "map", "create", path, "type", "hash", "key", "8", "value", "8",
       "entries", "4096", "name", "cilium_l2_respo", "flags", "1")  # fmt: skip
    return map_id(path)


def map_id(path: str) -> int:
    fd = syscall.obj_get(path)
    try:
        return syscall.map_info(fd).id
    finally:
        os.close(fd)


def tc_filter(
    ns: str,
    ifname: str,
    *,
    name: str,
    prio: int = 1,
    handle: int = 1,
    protocol: int = 0x0003,
) -> int:
    """Attach a pass-all program as a tc bpf filter on ``ifname``'s clsact ingress in ``ns``;
    returns its program id."""
    from pyroute2 import IPRoute

    with _compiled(_PASS_ALL) as b:
        fn = b.load_func(b"cil_from_netdev", b.SCHED_CLS)
        with in_netns(ns):
            ip = IPRoute()
            try:
                index = socket.if_nametoindex(ifname)
                try:
                    ip.tc("add", "clsact", index)
                except Exception as e:
                    if getattr(e, "code", None) != 17:  # EEXIST: ours is there already
                        raise
                ip.tc("add-filter", "bpf", index, handle, fd=fn.fd, name=name,
                      parent=0xFFFFFFF2, prio=prio, protocol=protocol,
                      direct_action=True)  # fmt: skip
            finally:
                ip.close()
        return prog_id(fn.fd)


class _ProgAttachAttr(ctypes.Structure):
    _fields_ = [
        ("target_ifindex", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("replace_bpf_fd", ctypes.c_uint32),
        ("relative_fd", ctypes.c_uint32),
        ("expected_revision", ctypes.c_uint64),
    ]


def tcx_program(ns: str, ifname: str) -> int:
    """Attach a pass-all program to ``ifname``'s tcx ingress in ``ns`` (kernel 6.6+; it stays
    until the interface goes); returns its program id."""
    with _compiled(_PASS_ALL) as b:
        fn = b.load_func(b"cil_from_netdev", b.SCHED_CLS)
        with in_netns(ns):
            index = socket.if_nametoindex(ifname)
            attr = _ProgAttachAttr(
                target_ifindex=index, attach_bpf_fd=fn.fd, attach_type=syscall.BPF_TCX_INGRESS
            )
            syscall._bpf(BPF_PROG_ATTACH, attr, f"tcx attach to {ifname}")
        return prog_id(fn.fd)


def prog_id(fd: int) -> int:
    info = syscall._ProgInfo()
    attr = syscall._InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    syscall._bpf(syscall.BPF_OBJ_GET_INFO_BY_FD, attr, "program info")
    return int(info.id)
