"""Typed access to the datapath's pinned maps, by bpf(2) syscalls only (nothing is compiled).

Four maps live under the BPF root (default ``/sys/fs/bpf/tc/globals``):

- ``cilium_l2_responder_v4`` (:class:`ResponderMap`): the IPv4 VIPs to answer, per ingress
  ifindex, with a ``responses_sent`` counter. Same name, layout and BTF as the reference, so the
  seed's ``bpftool map dump pinned ...`` works unchanged.
- ``l2announcer_responder_v6`` (:class:`ResponderV6Map`): the same for IPv6 VIPs (Neighbour
  Solicitations). A map of its own rather than wider keys in the first one, so the IPv4 map keeps
  the reference's layout. :class:`Responders` puts the two behind one interface.
- ``l2announcer_liveness`` (:class:`LivenessMap`): the agent's last CLOCK_MONOTONIC stamp and the
  maximum age (the renew deadline) after which the program stops answering.
- ``l2announcer_ifaces`` (:class:`IfaceMap`): each attached interface's MAC, so that one compiled
  program serves every interface.

The maps are created (with BTF) by the compiled program in :mod:`bpf.program`; here they are only
opened, so ``l2dbg`` can read them from any process.

The default BPF root is also Cilium's, which pins a map of the very same name and layout there.
So a pin is never assumed to be ours: :func:`check_pins` tells the maps our program created from
anyone else's (see there for the proof), and nothing here or in :mod:`bpf.datapath` adopts,
writes or unpins a map that is not ours.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from bpf import syscall
from bpf.syscall import BpfError

DEFAULT_BPF_ROOT = "/sys/fs/bpf/tc/globals"
RESPONDER_MAP_NAME = "cilium_l2_responder_v4"
RESPONDER_V6_MAP_NAME = "l2announcer_responder_v6"
LIVENESS_MAP_NAME = "l2announcer_liveness"
IFACES_MAP_NAME = "l2announcer_ifaces"
# Map sizes: the program is compiled with these (bpf/program.py passes them as defines), and a
# pinned map keeps the size it was created with. 4096 VIP-interface pairs per node, and 4096
# attached interfaces, are far beyond what one node announces.
RESPONDER_MAX_ENTRIES = 4096
RESPONDER_V6_MAX_ENTRIES = 4096
IFACES_MAX_ENTRIES = 4096

_KEY = struct.Struct("=4sI")  # ip4 bytes as on the wire (network order), ifindex host order
_KEY6 = struct.Struct("=16sI")  # ip6 bytes as on the wire, ifindex host order
_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")
_IFACE = struct.Struct("=6s2x")

LIVENESS_STAMP_INDEX = 0
LIVENESS_MAX_AGE_INDEX = 1

KERNEL_NAME_LEN = 15  # the kernel keeps this much of a map's name (BPF_OBJ_NAME_LEN - 1)

_MAP_TYPE_NAMES = {syscall.BPF_MAP_TYPE_HASH: "hash", syscall.BPF_MAP_TYPE_ARRAY: "array"}


def pin_path(bpf_root: str, name: str) -> str:
    return os.path.join(bpf_root, name)


def encode_key(ip: str, ifindex: int) -> bytes:
    """The 8-byte ``l2_responder_v4_key``: the address's bytes in network order, then the ifindex.

    bpftool reads ``ip4`` as a native u32, so on little-endian 198.51.100.10 prints as 174339014
    (0x0a6433c6), exactly like the seed's 655370 for 10.0.10.0.
    """
    addr = ipaddress.IPv4Address(ip)
    if not 0 < ifindex < 2**32:
        raise ValueError(f"ifindex out of range: {ifindex}")
    return _KEY.pack(addr.packed, ifindex)


def decode_key(raw: bytes) -> tuple[str, int]:
    packed, ifindex = _KEY.unpack(raw)
    return socket.inet_ntoa(packed), ifindex


def encode_key6(ip: str, ifindex: int) -> bytes:
    """The 20-byte ``l2_responder_v6_key``: the address's 16 bytes, then the ifindex."""
    addr = ipaddress.IPv6Address(ip)
    if not 0 < ifindex < 2**32:
        raise ValueError(f"ifindex out of range: {ifindex}")
    return _KEY6.pack(addr.packed, ifindex)


def decode_key6(raw: bytes) -> tuple[str, int]:
    packed, ifindex = _KEY6.unpack(raw)
    return str(ipaddress.IPv6Address(packed)), ifindex


def ip_version(ip: str) -> int:
    """4 or 6; raises ValueError naming the text when it is neither address."""
    try:
        return ipaddress.ip_address(ip).version
    except ValueError:
        raise ValueError(f"not an IPv4 or IPv6 address: {ip!r}") from None


@dataclass(frozen=True, slots=True)
class ResponderEntry:
    ip: str
    ifindex: int
    responses_sent: int


class _PinnedMap:
    """An open file descriptor on a pinned map whose key and value sizes were checked.

    Subclasses pass ``_KEY_SIZE``/``_VALUE_SIZE`` to every syscall, so the sizes checked at open
    are the only statement of the layout on this side.
    """

    _KEY_SIZE = 0
    _VALUE_SIZE = 0
    _TYPE = 0
    # As our program creates the map: checked before adopting a pin (check_pins), not at open,
    # so l2dbg can still read a map an older version created with other sizes.
    _MAX_ENTRIES = 0
    _FLAGS = 0

    def __init__(self, fd: int, path: str) -> None:
        self._fd = fd
        self.path = path
        info = syscall.map_info(fd)
        if (info.type, info.key_size, info.value_size) != (
            self._TYPE,
            self._KEY_SIZE,
            self._VALUE_SIZE,
        ):
            os.close(fd)
            raise BpfError(
                errno.EINVAL,
                f"{path}: type {info.type} key {info.key_size}B value {info.value_size}B, "
                f"want type {self._TYPE} key {self._KEY_SIZE}B value {self._VALUE_SIZE}B",
            )
        self.info = info

    @classmethod
    def open(cls, path: str, *, readonly: bool = False) -> Self:
        """Open the map pinned at ``path``; raises BpfError(ENOENT) when nothing is pinned there."""
        return cls(syscall.obj_get(path, readonly=readonly), path)

    @property
    def fd(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResponderMap(_PinnedMap):
    """``cilium_l2_responder_v4``: {ip4, ifindex} -> {responses_sent}."""

    _KEY_SIZE = 8
    _VALUE_SIZE = 8
    _TYPE = syscall.BPF_MAP_TYPE_HASH
    _MAX_ENTRIES = RESPONDER_MAX_ENTRIES
    _FLAGS = syscall.BPF_F_NO_PREALLOC
    _NAME = RESPONDER_MAP_NAME

    @staticmethod
    def _encode(ip: str, ifindex: int) -> bytes:
        return encode_key(ip, ifindex)

    @staticmethod
    def _decode(raw: bytes) -> tuple[str, int]:
        return decode_key(raw)

    @staticmethod
    def _order(raw: bytes) -> tuple[int, bytes]:
        packed, ifindex = _KEY.unpack(raw)
        return ifindex, packed

    def get(self, ip: str, ifindex: int) -> int | None:
        """responses_sent for the key, or None when the datapath does not answer for it."""
        raw = syscall.lookup(self._fd, self._encode(ip, ifindex), self._VALUE_SIZE)
        return None if raw is None else int(_U64.unpack(raw)[0])

    def add_if_missing(self, ip: str, ifindex: int) -> bool:
        """Insert with a zero counter unless present (BPF_NOEXIST); True when it was inserted.

        Never overwrites: an existing counter keeps counting across reconciliations and agent
        restarts (the reference rewrote it, resetting the counter), and the caller learns whether
        the key is new (GARP only then).
        """
        try:
            syscall.update(self._fd, self._encode(ip, ifindex), _U64.pack(0), syscall.BPF_NOEXIST)
        except BpfError as e:
            if e.errno == errno.EEXIST:
                return False
            if e.errno == errno.E2BIG:
                raise BpfError(
                    e.errno,
                    f"add {ip}@{ifindex}: {self._NAME} is full ({self.info.max_entries} entries)",
                ) from e
            raise
        return True

    def delete(self, ip: str, ifindex: int) -> bool:
        """Stop answering; False when the key was already absent (not an error)."""
        return syscall.delete(self._fd, self._encode(ip, ifindex))

    def keys(self) -> list[tuple[str, int]]:
        return [self._decode(k) for k in syscall.keys(self._fd, self._KEY_SIZE)]

    def items(self) -> list[ResponderEntry]:
        """Every entry, sorted by (ifindex, address) so listings are deterministic."""
        raw = syscall.items(self._fd, self._KEY_SIZE, self._VALUE_SIZE, self.info.max_entries)
        raw.sort(key=lambda kv: self._order(kv[0]))  # (ifindex, address bytes)
        out = []
        for k, v in raw:
            ip, ifindex = self._decode(k)
            out.append(ResponderEntry(ip, ifindex, int(_U64.unpack(v)[0])))
        return out

    def __iter__(self) -> Iterator[ResponderEntry]:
        return iter(self.items())


class ResponderV6Map(ResponderMap):
    """``l2announcer_responder_v6``: {ip6, ifindex} -> {responses_sent}; as :class:`ResponderMap`."""

    _KEY_SIZE = 20
    _MAX_ENTRIES = RESPONDER_V6_MAX_ENTRIES
    _NAME = RESPONDER_V6_MAP_NAME

    @staticmethod
    def _encode(ip: str, ifindex: int) -> bytes:
        return encode_key6(ip, ifindex)

    @staticmethod
    def _decode(raw: bytes) -> tuple[str, int]:
        return decode_key6(raw)

    @staticmethod
    def _order(raw: bytes) -> tuple[int, bytes]:
        packed, ifindex = _KEY6.unpack(raw)
        return ifindex, packed


class Responders:
    """Both responder maps behind the interface of one: an address goes to its family's map;
    listings hold both families (IPv4 first on each interface, as ``l2dbg`` prints them)."""

    def __init__(self, v4: ResponderMap, v6: ResponderV6Map) -> None:
        self.v4 = v4
        self.v6 = v6

    def _map(self, ip: str) -> ResponderMap:
        return self.v6 if ip_version(ip) == 6 else self.v4

    def get(self, ip: str, ifindex: int) -> int | None:
        return self._map(ip).get(ip, ifindex)

    def add_if_missing(self, ip: str, ifindex: int) -> bool:
        return self._map(ip).add_if_missing(ip, ifindex)

    def delete(self, ip: str, ifindex: int) -> bool:
        return self._map(ip).delete(ip, ifindex)

    def keys(self) -> list[tuple[str, int]]:
        return self.v4.keys() + self.v6.keys()

    def items(self) -> list[ResponderEntry]:
        both = self.v4.items() + self.v6.items()
        both.sort(key=lambda e: e.ifindex)  # stable: each family keeps its own order
        return both

    def __iter__(self) -> Iterator[ResponderEntry]:
        return iter(self.items())


class LivenessMap(_PinnedMap):
    """``l2announcer_liveness``: array [stamp_ns, max_age_ns] of CLOCK_MONOTONIC nanoseconds."""

    _KEY_SIZE = 4
    _VALUE_SIZE = 8
    _TYPE = syscall.BPF_MAP_TYPE_ARRAY
    _MAX_ENTRIES = 2
    _FLAGS = 0

    def _read(self, index: int) -> int:
        raw = syscall.lookup(self._fd, _U32.pack(index), self._VALUE_SIZE)
        return 0 if raw is None else int(_U64.unpack(raw)[0])

    def _write(self, index: int, value: int) -> None:
        syscall.update(self._fd, _U32.pack(index), _U64.pack(value))

    def stamp(self, now_ns: int) -> None:
        self._write(LIVENESS_STAMP_INDEX, now_ns)

    def clear(self) -> None:
        """Zero the stamp: the datapath stops answering at once (planned handover)."""
        self._write(LIVENESS_STAMP_INDEX, 0)

    def last_stamp(self) -> int:
        return self._read(LIVENESS_STAMP_INDEX)

    def set_max_age(self, max_age_ns: int) -> None:
        if max_age_ns <= 0:
            raise ValueError(f"max liveness age must be positive, got {max_age_ns} ns")
        self._write(LIVENESS_MAX_AGE_INDEX, max_age_ns)

    def max_age(self) -> int:
        return self._read(LIVENESS_MAX_AGE_INDEX)


class IfaceMap(_PinnedMap):
    """``l2announcer_ifaces``: ifindex -> the interface's MAC (the program's THIS_INTERFACE_MAC)."""

    _KEY_SIZE = 4
    _VALUE_SIZE = 8
    _TYPE = syscall.BPF_MAP_TYPE_HASH
    _MAX_ENTRIES = IFACES_MAX_ENTRIES
    _FLAGS = syscall.BPF_F_NO_PREALLOC

    def set(self, ifindex: int, mac: bytes) -> None:
        if len(mac) != 6:
            raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
        syscall.update(self._fd, _U32.pack(ifindex), _IFACE.pack(mac))

    def get(self, ifindex: int) -> bytes | None:
        raw = syscall.lookup(self._fd, _U32.pack(ifindex), self._VALUE_SIZE)
        return None if raw is None else bytes(_IFACE.unpack(raw)[0])

    def delete(self, ifindex: int) -> bool:
        return syscall.delete(self._fd, _U32.pack(ifindex))

    def items(self) -> dict[int, bytes]:
        return {
            int(_U32.unpack(k)[0]): bytes(_IFACE.unpack(v)[0])
            for k, v in syscall.items(
                self._fd, self._KEY_SIZE, self._VALUE_SIZE, self.info.max_entries
            )
        }


PINNED_MAPS: tuple[tuple[str, type[_PinnedMap]], ...] = (
    (RESPONDER_MAP_NAME, ResponderMap),
    (LIVENESS_MAP_NAME, LivenessMap),
    (IFACES_MAP_NAME, IfaceMap),
    (RESPONDER_V6_MAP_NAME, ResponderV6Map),
)
"""Every map our program pins under the BPF root, with the class that opens it."""


class PinConflictError(RuntimeError):
    """A pin at one of our paths that we cannot adopt; the message names it and what to do."""


@dataclass(frozen=True, slots=True)
class PinCheck:
    """What sits at one of our pin paths.

    ``ours``: a map our program created (:func:`check_pins` says how that is known); only such a
    pin may be unpinned. ``adoptable``: ours, and with the layout this version creates; only such
    a pin may be opened and written. ``problem`` says why a pin that exists is not adoptable.
    """

    path: str
    exists: bool
    ours: bool = False
    problem: str = ""

    @property
    def adoptable(self) -> bool:
        return self.exists and self.ours and not self.problem


def _describe(info: syscall.MapInfo) -> str:
    kind = _MAP_TYPE_NAMES.get(info.type, f"type-{info.type}")
    btf = f"BTF id {info.btf_id}" if info.btf_id else "no BTF"
    return (
        f"{kind} map {info.name!r} (id {info.id}, key {info.key_size} B, value "
        f"{info.value_size} B, {info.max_entries} entries, flags {info.flags:#x}, {btf})"
    )


def _read(path: str) -> syscall.MapInfo | str | None:
    """The map pinned at ``path``, why it is not readable as one, or None when nothing is."""
    try:
        fd = syscall.obj_get(path)
    except BpfError as e:
        if e.errno == errno.ENOENT:
            return None
        return f"it cannot be opened as a BPF map ({e.strerror})"
    try:
        obj = syscall.obj_kind(fd)
        return syscall.map_info(fd) if obj == "map" else f"it is a BPF {obj}, not a map"
    finally:
        os.close(fd)


def check_pins(bpf_root: str) -> dict[str, PinCheck]:
    """What sits at each of our pin paths under ``bpf_root``, by map name. Reads only.

    How a map is known to be ours, with no more than the agent's capabilities (CAP_BPF: reading a
    map's BTF by id would need CAP_SYS_ADMIN, which the agent does not have):

    - ``l2announcer_liveness``, ``l2announcer_ifaces`` and ``l2announcer_responder_v6``: by name. No one else names a map so,
      and the kernel keeps the name (its first 15 characters) with the map.
    - ``cilium_l2_responder_v4``, whose name and layout Cilium's map shares: by its BTF object.
      Our program creates its maps in one load, and every map of one load carries that load's
      BTF object (one id) for life; so a responder map whose BTF id is that of an l2announcer
      map beside it was created by our program. Cilium's carries its own program's BTF, or none.
      Nothing to write, so nothing to go stale or be lost in a crash, and no extra pin.
    """
    found = {name: _read(pin_path(bpf_root, name)) for name, _kind in PINNED_MAPS}
    ours_by_name = {
        name: info
        for name, info in found.items()
        if name != RESPONDER_MAP_NAME
        and isinstance(info, syscall.MapInfo)
        and info.name == name[:KERNEL_NAME_LEN]
    }
    family_btf = {info.btf_id for info in ours_by_name.values() if info.btf_id}
    checks = {}
    for name, kind in PINNED_MAPS:
        path = pin_path(bpf_root, name)
        info = found[name]
        if info is None:
            checks[name] = PinCheck(path, exists=False)
            continue
        if isinstance(info, str):
            checks[name] = PinCheck(path, True, problem=info)
            continue
        what = _describe(info)
        if name == RESPONDER_MAP_NAME and not (info.btf_id and info.btf_id in family_btf):
            theirs = ", ".join(f"{n} BTF id {i.btf_id}" for n, i in sorted(ours_by_name.items()))
            checks[name] = PinCheck(
                path,
                True,
                problem=f"{what}, not created with the l2announcer maps beside it "
                f"({theirs or 'there are none'})",
            )
            continue
        if name != RESPONDER_MAP_NAME and name not in ours_by_name:
            checks[name] = PinCheck(path, True, problem=f"{what}, not named {name}")
            continue
        checks[name] = _layout(path, what, info, kind)
    return checks


def _layout(path: str, what: str, info: syscall.MapInfo, kind: type[_PinnedMap]) -> PinCheck:
    want = (kind._TYPE, kind._KEY_SIZE, kind._VALUE_SIZE, kind._MAX_ENTRIES, kind._FLAGS)
    have = (info.type, info.key_size, info.value_size, info.max_entries, info.flags)
    if have == want:
        return PinCheck(path, True, ours=True)
    expected = (
        f"{_MAP_TYPE_NAMES.get(kind._TYPE, kind._TYPE)}, key {kind._KEY_SIZE} B, value "
        f"{kind._VALUE_SIZE} B, {kind._MAX_ENTRIES} entries, flags {kind._FLAGS:#x}"
    )
    return PinCheck(
        path,
        True,
        ours=True,
        problem=f"{what}, made by another l2announcer version; this one needs {expected}",
    )
