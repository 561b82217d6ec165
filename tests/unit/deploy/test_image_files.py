"""The Dockerfile and its build context stay in step with pyproject.toml: every package is copied
into the image, the entry point is a console script the project declares, and bcc comes from
Debian. (Building the image is tests/e2e/test_image.py, opt-in.)"""

from __future__ import annotations

import re
import tomllib

from tests.unit.deploy.manifests import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
IGNORE = (REPO / ".dockerignore").read_text().split()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _packages() -> list[str]:
    patterns: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return [p.rstrip("*") for p in patterns]


def test_every_package_is_in_the_build_context_and_copied() -> None:
    for package in _packages():
        assert f"!{package}" in IGNORE, f".dockerignore leaves out {package}"
        assert f"COPY {package} /src/{package}" in DOCKERFILE, f"Dockerfile does not copy {package}"
    for name in ("pyproject.toml", "README.md"):
        assert f"!{name}" in IGNORE


def test_entry_point_is_the_agents_console_script() -> None:
    assert 'ENTRYPOINT ["l2agent"]' in DOCKERFILE
    scripts = PYPROJECT["project"]["scripts"]
    assert "l2dbg" in scripts
    for target in scripts.values():
        assert target.split(".")[0] in _packages()


def test_bcc_and_tools_come_from_debian() -> None:
    install = re.search(r"apt-get install[^&]*", DOCKERFILE)
    assert install is not None
    packages = set(install.group(0).replace("\\", " ").split())
    assert {"python3-bpfcc", "libbpfcc", "bpfcc-tools", "bpftool", "iproute2"} <= packages
    assert "bcc" not in " ".join(PYPROJECT["project"]["dependencies"])


def test_no_kernel_headers_in_the_image() -> None:
    # bcc compiles against the UAPI headers the bpf package ships (bpf/include/), neither the
    # node's nor a kernel header package, and so needs no kheaders unpacking (xz) either.
    assert "linux-headers" not in DOCKERFILE
    assert "xz-utils" not in DOCKERFILE
