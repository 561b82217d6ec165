"""The header tree bcc compiles the program against (bpf/include/), shipped instead of asking the
node for kernel headers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bpf.program import HEADER_TREE, header_tree_problem

REPO = Path(__file__).resolve().parents[3]
GENERATOR = REPO / "scripts" / "gen-bpf-headers.py"
SOURCES = HEADER_TREE / "SOURCES.txt"


def test_the_shipped_tree_serves_this_machine() -> None:
    assert header_tree_problem() is None


def test_a_missing_tree_names_the_fix(tmp_path: Path) -> None:
    assert header_tree_problem(tmp_path, "x86_64") == (
        f"cannot compile the datapath: {tmp_path}/include/linux/kconfig.h is missing from the "
        "installed package; reinstall l2announcer (scripts/gen-bpf-headers.py writes the tree)"
    )


def test_an_architecture_without_headers_is_named() -> None:
    assert header_tree_problem(HEADER_TREE, "riscv64") == (
        "cannot compile the datapath on riscv64: the installed package carries headers for x86 "
        "only (scripts/gen-bpf-headers.py, run on riscv64, adds its own)"
    )


def test_every_file_is_listed_with_its_origin_and_licence() -> None:
    listed = {}
    for line in SOURCES.read_text().splitlines():
        m = re.fullmatch(r"(\S+)  <- (\S+)  \[(.+)\]", line)
        if m:
            listed[m.group(1)] = m.group(3)
    files = {str(p.relative_to(HEADER_TREE)) for p in HEADER_TREE.rglob("*.h") if p.is_file()}
    assert files == set(listed)
    assert set(listed.values()) <= {
        "GPL-2.0 WITH Linux-syscall-note",
        "GPL-2.0+ WITH Linux-syscall-note",
        "(none)",
        "Apache-2.0",
    }


def test_the_package_data_carries_the_tree() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = meta["tool"]["setuptools"]["package-data"]["bpf"]
    assert "include/**/*.h" in globs and "include/SOURCES.txt" in globs


def test_the_tree_is_what_the_generator_writes() -> None:
    """Regenerating from the installed linux-libc-dev changes nothing (when it is the version the
    tree was made from; another version may legitimately differ)."""
    if shutil.which("dpkg-query") is None:
        pytest.skip("no dpkg-query: not a Debian machine")
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "linux-libc-dev"], capture_output=True, text=True
    )
    if out.returncode != 0:
        pytest.skip("linux-libc-dev is not installed")
    if f"linux-libc-dev {out.stdout} " not in SOURCES.read_text():
        pytest.skip(f"linux-libc-dev {out.stdout} installed, the tree was made from another")
    check = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == "bpf/include/ is up to date\n"
