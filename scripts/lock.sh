#!/usr/bin/env bash
# Regenerates the lock files from pyproject.toml (`make lock`):
#
#   requirements.lock       the agent's dependencies and the build backend ([build-system]
#                           requires): what the image installs, nothing else;
#   requirements-test.lock  the same pins plus the `test` extra: what .venv installs
#                           (scripts/bootstrap.sh).
#
# Both hold every package, transitive ones too, at one exact version with the sha256 of each of
# its files on PyPI, so pip installs them in hash-checking mode and a changed or substituted file
# is refused. The test lock is resolved under the runtime lock as constraints, so the two can
# never name different versions of a package (tests/unit/deploy/test_lock.py checks it).
# Resolved for CPython 3.11 on Linux (Debian 12's Python, the image's and .venv's).
#
# A pin changes only when pyproject.toml no longer allows it, or when asked:
#   scripts/lock.sh                 keep every pin that still fits
#   scripts/lock.sh --upgrade       newest versions pyproject.toml allows
#   scripts/lock.sh --upgrade-package NAME   only NAME
# uv (a resolver from PyPI, pinned below) is installed into .venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
VENV=.venv
UV=$VENV/bin/uv

say() { printf 'lock: %s\n' "$*"; }

[ -x "$VENV/bin/python" ] || { say "no $VENV: run make bootstrap first" >&2; exit 1; }
if [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  say "installing uv $UV_VERSION into $VENV"
  "$VENV/bin/pip" install -q "uv==$UV_VERSION"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The build backend's requirements are locked too: the image and .venv install the project with
# --no-build-isolation, so setuptools comes from the lock, not from whatever PyPI has that day.
"$VENV/bin/python" - >"$work/build-system.in" <<'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
EOF

compile() {
  "$UV" pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
    --custom-compile-command "make lock" "$@"
}
compile pyproject.toml "$work/build-system.in" -o requirements.lock "$@"
compile pyproject.toml "$work/build-system.in" --extra test --constraint requirements.lock \
  -o requirements-test.lock "$@"
# uv names the temporary input in its annotations; name what it stands for instead.
sed -i "s|$work/build-system.in|pyproject.toml (build-system)|" requirements.lock requirements-test.lock
say "requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) packages;" \
  "requirements-test.lock: $(grep -c '^[a-z0-9]' requirements-test.lock)"
