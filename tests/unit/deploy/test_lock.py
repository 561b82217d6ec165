"""The lock files stay in step with pyproject.toml and with each other.

requirements.lock (the image) pins every runtime dependency and the build backend,
requirements-test.lock (.venv) the same pins plus the `test` extra; both come from `make lock`
(scripts/lock.sh). A dependency added to or changed in pyproject.toml without `make lock` fails
here, and so does a venv that runs something else than the lock says.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.unit.deploy.manifests import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME = REPO / "requirements.lock"
TEST = REPO / "requirements-test.lock"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: tuple[str, ...]


def pins(text: str) -> dict[str, Pin]:
    """name -> pin, for every ``name==version \\ --hash=sha256:...`` block of a lock file."""
    found: dict[str, Pin] = {}
    name = ""
    for line in text.splitlines():
        m = _PIN.match(line)
        if m:
            name = canonicalize_name(m.group(1))
            assert name not in found, f"{name} pinned twice"
            found[name] = Pin(Version(m.group(2)), ())
        elif line.strip().startswith("--hash=") and name:
            h = line.strip().removeprefix("--hash=").rstrip(" \\")
            found[name] = Pin(found[name].version, (*found[name].hashes, h))
        elif not line.startswith(" "):
            name = ""
    return found


RUNTIME_PINS = pins(RUNTIME.read_text())
TEST_PINS = pins(TEST.read_text())


def _requirements(key: str) -> list[Requirement]:
    if key == "build-system":
        return [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    if key == "dependencies":
        return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    return [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][key]]


@pytest.mark.parametrize(
    ("lock", "key"),
    [
        ("requirements.lock", "dependencies"),
        ("requirements.lock", "build-system"),
        ("requirements-test.lock", "dependencies"),
        ("requirements-test.lock", "build-system"),
        ("requirements-test.lock", "test"),
    ],
)
def test_every_requirement_of_pyproject_is_pinned_at_a_version_it_allows(
    lock: str, key: str
) -> None:
    locked = RUNTIME_PINS if lock == "requirements.lock" else TEST_PINS
    for req in _requirements(key):
        name = canonicalize_name(req.name)
        assert name in locked, f"{lock} has no pin for {req} ({key}): run make lock"
        assert req.specifier.contains(locked[name].version, prereleases=True), (
            f"{lock} pins {name}=={locked[name].version}, outside {req} ({key}): run make lock"
        )


def test_the_test_lock_pins_the_image_lock_unchanged() -> None:
    for name, pin in RUNTIME_PINS.items():
        assert name in TEST_PINS, f"requirements-test.lock lacks {name}"
        assert TEST_PINS[name].version == pin.version, name


def test_the_image_lock_holds_no_test_tool() -> None:
    test_only = {canonicalize_name(r.name) for r in _requirements("test")}
    assert not test_only & set(RUNTIME_PINS)


def test_every_pin_carries_sha256_hashes() -> None:
    for lock, locked in (
        ("requirements.lock", RUNTIME_PINS),
        ("requirements-test.lock", TEST_PINS),
    ):
        assert len(locked) > 10, lock
        for name, pin in locked.items():
            assert pin.hashes, f"{lock}: {name} has no hash"
            assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes), name


def test_the_lock_files_are_made_by_make_lock() -> None:
    for path in (RUNTIME, TEST):
        assert "#    make lock" in path.read_text().splitlines()[1], path.name


def test_the_venv_runs_the_locked_versions() -> None:
    # .venv is installed from requirements-test.lock (scripts/bootstrap.sh): a package at another
    # version means it was installed by hand, or the lock changed and bootstrap has not run.
    for name, pin in TEST_PINS.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is in requirements-test.lock but not installed: make bootstrap")
        assert Version(installed) == pin.version, f"{name} {installed}, locked {pin.version}"
