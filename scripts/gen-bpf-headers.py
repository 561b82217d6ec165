#!/usr/bin/env python3
"""Generate bpf/include/, the header tree bcc compiles the datapath against instead of the node's
kernel headers.

The program (bpf/l2_responder.c) uses only UAPI headers, which Debian ships in linux-libc-dev
(/usr/include/linux, /usr/include/asm-generic, /usr/include/<multiarch>/asm). bcc, however, wants
a kernel tree: it runs clang inside the directory named by BCC_KERNEL_SOURCE, with the kernel's
include order (include/, arch/<arch>/include/uapi, include/uapi), force-includes
include/linux/kconfig.h (its presence is also how bcc decides the tree is usable, before it tries
/sys/kernel/kheaders.tar.xz), and its own helpers.h includes <linux/version.h>, <linux/log2.h>,
<asm/page.h> and insists on CONFIG_BPF_SYSCALL. So the tree is:

    include/uapi/linux/*.h, include/uapi/asm-generic/*.h   copied from linux-libc-dev
    arch/<arch>/include/uapi/asm/*.h                       copied from linux-libc-dev
    include/linux/kconfig.h, include/linux/log2.h,
    include/asm/page.h, include/uapi/linux/bpf.h           four stubs written here
    SOURCES.txt                                            package, version, licence, file list

Only the headers the program and bcc's helpers.h reach are copied: the closure of their
#include lines. Usage:

    scripts/gen-bpf-headers.py           # rewrite bpf/include/ from the installed linux-libc-dev
    scripts/gen-bpf-headers.py --check   # exit 1 when bpf/include/ differs from what it would write
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "bpf" / "l2_responder.c"
DEST = ROOT / "bpf" / "include"
PACKAGE = "linux-libc-dev"
USR_INCLUDE = Path("/usr/include")

# What bcc's own headers (compiled into libbcc and prepended to every program: its copy of the UAPI
# bpf.h, then helpers.h) include from the kernel tree, besides what the program names itself.
BCC_UAPI_INCLUDES = ("linux/types.h", "linux/bpf_common.h", "linux/if_packet.h", "linux/version.h")

# UAPI headers bcc brings itself: its own linux/bpf.h, included before the program and guarded by
# the kernel source's _UAPI__LINUX_BPF_H__, so the tree's copy is never read (Debian's installed
# copy would even be read twice: `make headers_install` renames its guard to __LINUX_BPF_H__,
# and clang rejects the second definition of every enum). The tree only needs the name to exist.
BCC_PROVIDED = ("linux/bpf.h",)

# Kernel architecture directory (arch/<name>) for each Debian multiarch triplet we can build for.
KERNEL_ARCH = {"x86_64-linux-gnu": "x86", "aarch64-linux-gnu": "arm64"}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.MULTILINE)

STUBS = {
    "include/uapi/linux/bpf.h": """\
/* Empty: bcc compiles every program with its own copy of the UAPI linux/bpf.h (the one its
 * front end and loader are built for), included first under the same include guard the kernel
 * source uses, so this file is never read. It exists so that #include <uapi/linux/bpf.h>
 * resolves. */
""",
    "include/linux/kconfig.h": """\
/* Stands in for the kernel's include/linux/kconfig.h, which bcc force-includes (and whose
 * presence tells bcc this directory is a usable kernel tree). The kernel's version pulls in the
 * build's generated/autoconf.h; the only option bcc's helpers.h checks is CONFIG_BPF_SYSCALL,
 * true on every kernel that can load the program at all. */
#ifndef L2ANNOUNCER_KCONFIG_H
#define L2ANNOUNCER_KCONFIG_H
#define CONFIG_BPF_SYSCALL 1
#endif
""",
    "include/linux/types.h": """\
/* The kernel's own linux/types.h, reduced to what bcc's helpers.h uses: the UAPI types plus the
 * kernel's short names for them (u8 ... s64, size_t, uintptr_t). As in a kernel tree, <linux/types.h> finds this
 * file before include/uapi/linux/types.h. */
#ifndef L2ANNOUNCER_LINUX_TYPES_H
#define L2ANNOUNCER_LINUX_TYPES_H
#include <uapi/linux/types.h>
typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef __kernel_size_t size_t;
typedef unsigned long uintptr_t;
#endif
""",
    "include/linux/log2.h": """\
/* Empty: bcc's helpers.h includes <linux/log2.h> but uses nothing from it (it defines its own
 * bpf_log2), and neither does the program. */
""",
    "include/asm/page.h": """\
/* Empty: bcc's helpers.h includes <asm/page.h> for PAGE_SIZE, used only by its perf ring
 * buffer macros, which the program does not use; a use would fail to compile, loudly. */
""",
}


def fail(message: str) -> None:
    print(f"gen-bpf-headers: {message}", file=sys.stderr)
    sys.exit(1)


def package_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", PACKAGE], capture_output=True, text=True
    )
    if out.returncode != 0 or not out.stdout:
        fail(f"{PACKAGE} is not installed (apt-get install {PACKAGE})")
    return out.stdout


def program_includes() -> list[str]:
    """The program's `#include <uapi/...>` lines, as UAPI paths (linux/bpf.h)."""
    found = []
    for name in INCLUDE_RE.findall(PROGRAM.read_text()):
        if not name.startswith("uapi/"):
            fail(f"{PROGRAM.name} includes <{name}>: only <uapi/...> headers are shipped")
        found.append(name.removeprefix("uapi/"))
    return found


def closure(roots: list[str], asm_dir: Path) -> dict[str, Path]:
    """Every header reachable from ``roots``: {include name: file in linux-libc-dev}."""

    def locate(name: str) -> Path | None:
        if name.startswith("asm/"):
            path = asm_dir / name.removeprefix("asm/")
        elif name.startswith(("linux/", "asm-generic/")):
            path = USR_INCLUDE / name
        else:
            return None
        return path if path.is_file() else None

    found: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found or name in BCC_PROVIDED:
            continue
        path = locate(name)
        if path is None:
            fail(f"<{name}> is not a UAPI header of {PACKAGE} (looked in {USR_INCLUDE})")
        found[name] = path
        todo.extend(INCLUDE_RE.findall(path.read_text()))
    return found


def spdx(path: Path) -> str:
    match = re.search(r"SPDX-License-Identifier:\s*(.+?)\s*(\*/)?$", path.read_text(), re.M)
    return match.group(1) if match else "(none)"


def generate(dest: Path) -> None:
    triplet = sysconfig.get_config_var("MULTIARCH") or ""
    if triplet not in KERNEL_ARCH:
        fail(f"unsupported architecture {triplet!r}; supported: {', '.join(KERNEL_ARCH)}")
    arch = KERNEL_ARCH[triplet]
    asm_dir = USR_INCLUDE / triplet / "asm"
    version = package_version()
    headers = closure([*program_includes(), *BCC_UAPI_INCLUDES], asm_dir)
    stubs = {f"include/uapi/{name}" for name in BCC_PROVIDED}
    if not stubs <= STUBS.keys():
        fail(f"no stub for {sorted(stubs - STUBS.keys())}")

    lines = [
        "Generated by scripts/gen-bpf-headers.py; do not edit. Regenerate after changing the",
        "program's #include lines or after a linux-libc-dev update.",
        "",
        f"Copied from Debian's {PACKAGE} {version} ({triplet}), the kernel's UAPI headers as",
        "installed by `make headers_install`. Licence: as each file's SPDX line says (listed",
        "below); for these headers GPL-2.0 WITH Linux-syscall-note, whose note permits their use",
        f"by programs that are not GPL. Debian's copyright file: /usr/share/doc/{PACKAGE}/copyright.",
        "Files without an SPDX line are parts of the same UAPI (Debian: GPL-2).",
        "The stubs are written by the generator (Apache-2.0, as the rest of the project); each",
        "says why it is enough.",
        "",
    ]
    for name, src in sorted(headers.items()):
        if name.startswith("asm/"):
            rel = f"arch/{arch}/include/uapi/{name}"
        else:
            rel = f"include/uapi/{name}"
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        lines.append(f"{rel}  <- {src}  [{spdx(src)}]")
    for rel, text in sorted(STUBS.items()):
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        lines.append(f"{rel}  <- stub  [Apache-2.0]")
    (dest / "SOURCES.txt").write_text("\n".join(lines) + "\n")


def differences(a: Path, b: Path) -> list[str]:
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

    fa, fb = files(a), files(b)
    diff = sorted(fa ^ fb)
    diff += [f for f in sorted(fa & fb) if not filecmp.cmp(a / f, b / f, shallow=False)]
    return diff


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare with bpf/include/, write nothing")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "include"
        generate(fresh)
        if a.check:
            diff = differences(fresh, DEST) if DEST.is_dir() else ["bpf/include/ is missing"]
            if diff:
                print(f"bpf/include/ is out of date ({', '.join(diff)}): run {sys.argv[0]}")
                return 1
            print("bpf/include/ is up to date")
            return 0
        if DEST.exists():
            shutil.rmtree(DEST)
        shutil.copytree(fresh, DEST)
    print(f"wrote {DEST.relative_to(ROOT)}/ ({sum(1 for p in DEST.rglob('*.h'))} headers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
