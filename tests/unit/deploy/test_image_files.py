"""The Dockerfile and its build context stay in step with pyproject.toml and the lock file:
every package is copied into the image, the dependencies come from requirements.lock only (with
their hashes), the image's stage has no build tool, the entry point is a console script the
project declares, bcc comes from Debian, and what the build prunes from the venv is nothing the
project imports. (Building and running the image is tests/e2e/test_image.py.)"""

from __future__ import annotations

import ast
import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.deploy.manifests import REPO
from tests.unit.deploy.test_lock import RUNTIME_PINS

DOCKERFILE = (REPO / "Dockerfile").read_text()
IGNORE = (REPO / ".dockerignore").read_text().split()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# The stages, split at each FROM: the build stage, then the image's own.
STAGES = re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]
BUILD, IMAGE = STAGES[0], STAGES[-1]


def _packages() -> list[str]:
    patterns: list[str] = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return [p.rstrip("*") for p in patterns]


def _instruction(stage: str, start: str) -> str:
    """The whole RUN instruction of ``stage`` that contains ``start``, its lines joined."""
    for run in re.findall(r"^RUN (?:[^\n]*\\\n)*[^\n]*", stage, flags=re.M):
        if start in run:
            return str(run).replace("\\\n", " ")
    raise AssertionError(f"no RUN with {start!r}")


def _apt_packages(stage: str) -> set[str]:
    run = _instruction(stage, "apt-get install")
    words = run.split("apt-get install", 1)[1].split("&&")[0].split()
    return {w for w in words if not w.startswith("-")}


def test_two_stages_and_only_the_venv_crosses() -> None:
    assert len(STAGES) == 2
    assert BUILD.startswith("${BASE} AS build") and IMAGE.startswith("${BASE}\n")
    copies = re.findall(r"^COPY .*", IMAGE, flags=re.M)
    assert copies == ["COPY --from=build /opt/l2announcer /opt/l2announcer"]


def test_every_package_is_in_the_build_context_and_copied() -> None:
    for package in _packages():
        assert f"!{package}" in IGNORE, f".dockerignore leaves out {package}"
        assert f"COPY {package} /src/{package}" in BUILD, f"Dockerfile does not copy {package}"
    for name in ("pyproject.toml", "README.md", "requirements.lock"):
        assert f"!{name}" in IGNORE


def test_dependencies_come_from_the_lock_with_their_hashes() -> None:
    run = _instruction(BUILD, "-r /src/requirements.lock")
    assert "--require-hashes" in run and "--only-binary=:all:" in run
    assert "COPY requirements.lock /src/requirements.lock" in BUILD
    # The project on top, without resolving anything again or fetching a build backend.
    project = _instruction(BUILD, "install --no-deps")
    assert "--no-build-isolation" in project and "--no-index" in project
    assert "requirements-test.lock" not in DOCKERFILE
    assert "tomllib" not in DOCKERFILE  # no longer read from pyproject.toml's ranges


def test_the_image_stage_has_no_build_tools() -> None:
    assert _apt_packages(IMAGE) == {"python3", "python3-bpfcc", "libbpfcc", "bpftool", "iproute2"}
    assert "pip install" not in IMAGE
    uninstalled = _instruction(BUILD, 'pip" uninstall').split("uninstall -y", 1)[1]
    assert {"pip", "setuptools", "wheel"} <= set(uninstalled.split("&&")[0].split())


def _pruned() -> set[str]:
    run = _instruction(BUILD, 'pip" uninstall')
    return {canonicalize_name(n) for n in run.split("uninstall -y", 1)[1].split("&&")[0].split()}


def _imported_top_levels() -> set[str]:
    names: set[str] = set()
    for package in _packages():
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
    return names


def test_what_the_build_prunes_is_locked_undeclared_and_never_imported() -> None:
    pruned = _pruned()
    assert pruned <= set(RUNTIME_PINS), pruned - set(RUNTIME_PINS)
    declared = {
        canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]
    }
    assert not pruned & declared
    by_module = metadata.packages_distributions()
    imported = _imported_top_levels()
    for module in imported:
        dists = {canonicalize_name(d) for d in by_module.get(module.split(".")[0], [])}
        assert not dists & pruned, f"{module} is imported but its package is pruned from the image"
    # kubernetes/aio is removed from the installed client: nothing may import it.
    assert 'rm -rf "$site/kubernetes/aio"' in BUILD
    assert not [m for m in imported if m == "kubernetes.aio" or m.startswith("kubernetes.aio.")]


def test_entry_point_is_the_agents_console_script() -> None:
    assert 'ENTRYPOINT ["l2agent"]' in IMAGE
    scripts = PYPROJECT["project"]["scripts"]
    assert "l2dbg" in scripts
    for target in scripts.values():
        assert target.split(".")[0] in _packages()


def test_bcc_and_tools_come_from_debian() -> None:
    assert {"python3-bpfcc", "libbpfcc", "bpftool", "iproute2"} <= _apt_packages(IMAGE)
    assert "bcc" not in " ".join(PYPROJECT["project"]["dependencies"])
    assert "bcc" not in RUNTIME_PINS


def test_no_kernel_headers_in_the_image() -> None:
    # bcc compiles against the UAPI headers the bpf package ships (bpf/include/), neither the
    # node's nor a kernel header package, and so needs no kheaders unpacking (xz) either.
    assert "linux-headers" not in DOCKERFILE
    assert "xz-utils" not in DOCKERFILE
