"""A tiny ctypes wrapper of the bpf(2) syscall: open pinned maps and read or write their elements.

Why not bcc: reading a pinned map must not compile anything (``l2dbg`` starts in milliseconds and
may run where no kernel headers exist), and libbcc is a 100 MB library to load for six syscalls.
Only the commands the typed maps and the ownership checks need are wrapped (what a pin holds,
what else sits on an interface's ingress hook); every failure raises :class:`BpfError`,
an ``OSError`` carrying the errno, so callers can tell ``ENOENT`` (missing key) from real faults.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
from dataclasses import dataclass

# bpf(2) syscall numbers per architecture (asm/unistd.h).
_NR_BPF = {
    "x86_64": 321,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "ppc64le": 361,
    "s390x": 351,
    "i686": 357,
    "armv7l": 386,
}

BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_MAP_LOOKUP_BATCH = 24

BPF_TCX_INGRESS = 46  # enum bpf_attach_type; kernels before 6.6 answer EINVAL

BPF_ANY = 0
BPF_NOEXIST = 1

BPF_F_NO_PREALLOC = 1
BPF_F_RDONLY = 1 << 3

BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


class BpfError(OSError):
    """A failed bpf(2) command; ``errno`` tells why (ENOENT, EEXIST, ENOSPC, EPERM, ...)."""


class _ObjGetAttr(ctypes.Structure):
    _fields_ = [
        ("pathname", ctypes.c_uint64),
        ("bpf_fd", ctypes.c_uint32),
        ("file_flags", ctypes.c_uint32),
        ("path_fd", ctypes.c_int32),
        ("_pad", ctypes.c_uint32),
    ]


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # also next_key
        ("flags", ctypes.c_uint64),
    ]


class _BatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _InfoAttr(ctypes.Structure):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class _MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
    ]


class _IdAttr(ctypes.Structure):
    """The ``*_GET_FD_BY_ID`` commands' part of union bpf_attr."""

    _fields_ = [
        ("id", ctypes.c_uint32),
        ("next_id", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
    ]


class _QueryAttr(ctypes.Structure):
    """BPF_PROG_QUERY's part of union bpf_attr (``target_fd`` is the ifindex for tcx)."""

    _fields_ = [
        ("target", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.c_uint64),
        ("prog_cnt", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("prog_attach_flags", ctypes.c_uint64),
        ("link_ids", ctypes.c_uint64),
        ("link_attach_flags", ctypes.c_uint64),
        ("revision", ctypes.c_uint64),
    ]


class _ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info, up to the program's name."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
    ]


@functools.cache  # looked up once, not per syscall (4,096 adds are 4,096 syscalls)
def _nr_bpf() -> int:
    machine = platform.machine()
    try:
        return _NR_BPF[machine]
    except KeyError:
        raise BpfError(errno.ENOSYS, f"bpf(2) syscall number unknown for {machine}") from None


def _bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    ret = int(_syscall(_nr_bpf(), cmd, ctypes.addressof(attr), ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"{what}: {os.strerror(err)}")
    return ret


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What the kernel reports about a map; used to refuse a pin that is not the map we expect."""

    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    btf_id: int = 0  # 0: created without BTF


@dataclass(frozen=True, slots=True)
class ProgInfo:
    """A loaded program as the kernel names it (what ``bpftool prog show`` prints)."""

    id: int
    type: int
    name: str
    tag: str


def obj_get(path: str, *, readonly: bool = False) -> int:
    """Open a pinned BPF object; returns a new file descriptor the caller must close."""
    raw = os.fsencode(path)
    buf = ctypes.create_string_buffer(raw)
    attr = _ObjGetAttr(pathname=ctypes.addressof(buf), file_flags=BPF_F_RDONLY if readonly else 0)
    return _bpf(BPF_OBJ_GET, attr, f"open pinned {path}")


def obj_pin(fd: int, path: str) -> None:
    """Pin the BPF object ``fd`` at ``path`` on bpffs (EEXIST when something is pinned there)."""
    raw = os.fsencode(path)
    buf = ctypes.create_string_buffer(raw)
    attr = _ObjGetAttr(pathname=ctypes.addressof(buf), bpf_fd=fd)
    _bpf(BPF_OBJ_PIN, attr, f"pin {path}")


def map_info(fd: int) -> MapInfo:
    info = _MapInfo()
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "map info")
    return MapInfo(
        type=info.type,
        id=info.id,
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        flags=info.map_flags,
        name=info.name.decode(errors="replace"),
        btf_id=info.btf_id,
    )


def obj_kind(fd: int) -> str:
    """What a BPF file descriptor refers to: ``map``, ``prog``, ``link``, ``btf`` (the kernel's
    anon-inode name). BPF_OBJ_GET opens any pinned object, and BPF_OBJ_GET_INFO_BY_FD would fill a
    map's info from a program's, so a pin is known to be a map only from this."""
    target = os.readlink(f"/proc/self/fd/{fd}")
    prefix = "anon_inode:bpf-"
    return target[len(prefix) :] if target.startswith(prefix) else target


def prog_info(prog_id: int) -> ProgInfo:
    """Name, type and tag of the loaded program ``prog_id`` (CAP_SYS_ADMIN)."""
    fd = _bpf(BPF_PROG_GET_FD_BY_ID, _IdAttr(id=prog_id), f"open program {prog_id}")
    try:
        info = _ProgInfo()
        attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, f"program {prog_id} info")
    finally:
        os.close(fd)
    return ProgInfo(
        id=info.id,
        type=info.type,
        name=info.name.decode(errors="replace"),
        tag=bytes(info.tag).hex(),
    )


def tcx_ingress_programs(ifindex: int) -> list[int]:
    """Ids of the programs attached to ``ifindex``'s tcx ingress hook (kernel 6.6+; the hook
    runs before the tc filters of a clsact qdisc). Empty on kernels without tcx."""
    ids = (ctypes.c_uint32 * 64)()
    attr = _QueryAttr(
        target=ifindex, attach_type=BPF_TCX_INGRESS, prog_ids=ctypes.addressof(ids), prog_cnt=64
    )
    try:
        _bpf(BPF_PROG_QUERY, attr, f"query tcx ingress of interface {ifindex}")
    except BpfError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            return []  # no tcx in this kernel
        raise
    return [int(ids[i]) for i in range(min(attr.prog_cnt, len(ids)))]


def lookup(fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value stored under ``key``, or None when the key is absent."""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    attr = _ElemAttr(map_fd=fd, key=ctypes.addressof(k), value=ctypes.addressof(v))
    try:
        _bpf(BPF_MAP_LOOKUP_ELEM, attr, "lookup")
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    return v.raw


def update(fd: int, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    attr = _ElemAttr(map_fd=fd, key=ctypes.addressof(k), value=ctypes.addressof(v), flags=flags)
    _bpf(BPF_MAP_UPDATE_ELEM, attr, "update")


def delete(fd: int, key: bytes) -> bool:
    """Delete ``key``; False when it was not there (deleting a missing key is not an error)."""
    k = ctypes.create_string_buffer(key, len(key))
    attr = _ElemAttr(map_fd=fd, key=ctypes.addressof(k))
    try:
        _bpf(BPF_MAP_DELETE_ELEM, attr, "delete")
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def keys(fd: int, key_size: int) -> list[bytes]:
    """Every key, by BPF_MAP_GET_NEXT_KEY (a hash map may skip or repeat keys deleted meanwhile)."""
    out: list[bytes] = []
    cur: ctypes.Array[ctypes.c_char] | None = None
    nxt = ctypes.create_string_buffer(key_size)
    while True:
        attr = _ElemAttr(
            map_fd=fd,
            key=ctypes.addressof(cur) if cur is not None else 0,
            value=ctypes.addressof(nxt),
        )
        try:
            _bpf(BPF_MAP_GET_NEXT_KEY, attr, "next key")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return out
            raise
        out.append(nxt.raw)
        cur = ctypes.create_string_buffer(nxt.raw, key_size)


def items(fd: int, key_size: int, value_size: int, max_entries: int) -> list[tuple[bytes, bytes]]:
    """Every (key, value), in one BPF_MAP_LOOKUP_BATCH pass when the kernel supports it.

    One batch syscall instead of two per key keeps a dump of 4,096 keys in milliseconds; kernels
    or map types without batch support fall back to key iteration plus lookups.
    """
    n = max(max_entries, 1)
    kbuf = ctypes.create_string_buffer(key_size * n)
    vbuf = ctypes.create_string_buffer(value_size * n)
    out_batch = ctypes.create_string_buffer(max(key_size, 8))
    in_batch = ctypes.create_string_buffer(max(key_size, 8))
    result: list[tuple[bytes, bytes]] = []
    first = True
    while True:
        attr = _BatchAttr(
            in_batch=0 if first else ctypes.addressof(in_batch),
            out_batch=ctypes.addressof(out_batch),
            keys=ctypes.addressof(kbuf),
            values=ctypes.addressof(vbuf),
            count=n,
            map_fd=fd,
        )
        done = False
        try:
            _bpf(BPF_MAP_LOOKUP_BATCH, attr, "lookup batch")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                done = True
            elif e.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, 524) and first:
                return _items_by_iteration(fd, key_size, value_size)
            else:
                raise
        count = int(attr.count)
        kraw, vraw = kbuf.raw, vbuf.raw
        for i in range(count):
            result.append(
                (
                    kraw[i * key_size : (i + 1) * key_size],
                    vraw[i * value_size : (i + 1) * value_size],
                )
            )
        if done:
            return result
        ctypes.memmove(in_batch, out_batch, len(out_batch))
        first = False


def _items_by_iteration(fd: int, key_size: int, value_size: int) -> list[tuple[bytes, bytes]]:
    result: list[tuple[bytes, bytes]] = []
    for k in keys(fd, key_size):
        v = lookup(fd, k, value_size)
        if v is not None:
            result.append((k, v))
    return result
