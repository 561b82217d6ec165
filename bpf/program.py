"""Compile and load the ARP responder with bcc; opening or creating (and pinning) its maps.

bcc is imported here and nowhere else in ``bpf/``: compiling needs kernel headers and ~0.2-1 s,
which only the agent pays, once at start. The maps are declared ``BPF_TABLE_PINNED`` with their
pin paths passed as defines: bcc opens a map already pinned there (so a restarted agent adopts the
previous agent's map and its counters) or creates it with BTF and pins it (so bpftool prints the
field names of the seed).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bpf.maps import (
    IFACES_MAP_NAME,
    IFACES_MAX_ENTRIES,
    LIVENESS_MAP_NAME,
    RESPONDER_MAP_NAME,
    RESPONDER_MAX_ENTRIES,
    pin_path,
)

PROGRAM_SOURCE = "l2_responder.c"
BPF_FS_MAGIC = 0xCAFE4A11
_libc = ctypes.CDLL(None, use_errno=True)
FUNCTION_NAME = "l2_responder"


class CompileError(RuntimeError):
    """bcc failed to compile, load or verify the program; the message carries bcc's reason."""


@dataclass
class LoadedProgram:
    """A verified program loaded in the kernel; ``fd`` stays valid while this object lives."""

    fd: int
    name: str
    bpf_root: str
    _bpf: Any  # the bcc.BPF object owning the program and map fds

    def close(self) -> None:
        """Release our fds; an attached program and pinned maps stay in the kernel."""
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None


def source() -> str:
    return resources.files("bpf").joinpath(PROGRAM_SOURCE).read_text()


def on_bpffs(path: str) -> bool:
    """Whether ``path`` lives on bpffs, where maps can be pinned (statfs f_type BPF_FS_MAGIC)."""
    buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first word
    if _libc.statfs(os.fsencode(path), buf) != 0:
        return False
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF == BPF_FS_MAGIC


def _define(name: str, path: str) -> str:
    if '"' in path or "\\" in path:
        raise ValueError(f"unsupported character in BPF pin path: {path!r}")
    return f'-D{name}="{path}"'


def headers_problem(release: str | None = None) -> str | None:
    """Why bcc cannot compile here (no kernel headers), or None. bcc itself would fail with a
    page of clang errors; this names the fix (docs/deploy.md, section 5)."""
    release = release or os.uname().release
    build = f"/lib/modules/{release}/build"
    kheaders = "/sys/kernel/kheaders.tar.xz"
    if os.path.isdir(build) or os.path.exists(kheaders):
        return None
    return (
        f"cannot compile the datapath: no kernel headers for {release} (looked for {build} and "
        f"{kheaders}); install the node's kernel headers (Debian/Ubuntu: apt install "
        f"linux-headers-{release}) and mount the host's /lib/modules and /usr/src read-only, as "
        "deploy/daemonset.yaml does"
    )


def load(bpf_root: str) -> LoadedProgram:
    """Compile, verify and load the program, with its maps pinned under ``bpf_root``.

    ``bpf_root`` is created when missing (bpffs allows mkdir). Raises :class:`CompileError` when
    bcc or the verifier refuses the program.
    """
    existing = os.path.abspath(bpf_root)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not on_bpffs(existing):  # bcc would only say "bpf_table ... failed to open"
        raise CompileError(
            f"BPF root {bpf_root} is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf)"
        )
    os.makedirs(bpf_root, exist_ok=True)
    problem = headers_problem()
    if problem is not None:
        raise CompileError(problem)
    from bcc import BPF  # deferred: importing bcc loads libbcc (~100 MB)

    cflags = [
        _define("L2_PIN_RESPONDER", pin_path(bpf_root, RESPONDER_MAP_NAME)),
        _define("L2_PIN_LIVENESS", pin_path(bpf_root, LIVENESS_MAP_NAME)),
        _define("L2_PIN_IFACES", pin_path(bpf_root, IFACES_MAP_NAME)),
        f"-DL2_RESPONDER_MAX_ENTRIES={RESPONDER_MAX_ENTRIES}",
        f"-DL2_IFACES_MAX_ENTRIES={IFACES_MAX_ENTRIES}",
    ]
    try:
        b = BPF(text=source().encode(), cflags=cflags)
        fn = b.load_func(FUNCTION_NAME.encode(), BPF.SCHED_CLS)
    except Exception as e:  # bcc raises bare Exception for compile and verifier failures
        raise CompileError(f"loading {PROGRAM_SOURCE}: {e}") from e
    return LoadedProgram(fd=int(fn.fd), name=FUNCTION_NAME, bpf_root=bpf_root, _bpf=b)
