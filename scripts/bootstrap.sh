#!/usr/bin/env bash
# Bootstraps a fresh Debian 12 machine (as root) for l2announcer: Debian packages, bpffs, and the
# project's virtualenv from requirements-test.lock (no kernel headers: bcc compiles against the
# tree in bpf/include/). podman, buildah and mmdebstrap are for the image and its test
# (scripts/image.sh, tests/e2e/test_image.py). Every step checks before it acts, so a second run
# does nothing and takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(python3-bpfcc libbpfcc bpfcc-tools bpftool iproute2 arping ndisc6 iputils-ping tcpdump
      python3-venv python3-dev gcc curl nftables podman buildah mmdebstrap)
VENV=.venv
PY=${PYTHON:-/usr/bin/python3}

say() { printf 'bootstrap: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  say "not root: skipping Debian packages, header links and bpffs (privileged tests will be skipped)"
else
  missing=()
  for p in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  if ! mountpoint -q /sys/fs/bpf; then
    say "mounting bpffs on /sys/fs/bpf"
    mount -t bpf bpf /sys/fs/bpf
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi

# bcc is not on PyPI: expose only Debian's bcc package to the venv (not all of dist-packages, whose
# older copies of cryptography, yaml, ... would shadow the pinned ones).
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
if [ -d /usr/lib/python3/dist-packages/bcc ]; then
  mkdir -p "$VENV/debian-bcc"
  ln -sfn /usr/lib/python3/dist-packages/bcc "$VENV/debian-bcc/bcc"
  echo "$(pwd)/$VENV/debian-bcc" > "$site/debian-bcc.pth"
fi

# Every package at the version and hashes of requirements-test.lock (`make lock` makes it from
# pyproject.toml; the image installs the same pins from requirements.lock), wheels only; then the
# project itself, editable, built by the locked setuptools without reaching an index.
stamp=$VENV/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-test.lock -nt "$stamp" ]; then
  say "installing requirements-test.lock and the project into $VENV"
  log=$VENV/pip-install.log
  if ! {
    "$VENV/bin/pip" install -q --require-hashes --only-binary=:all: -r requirements-test.lock &&
      "$VENV/bin/pip" install -q --no-deps --no-build-isolation --no-index -e .
  } >"$log" 2>&1; then
    say "pip install failed; its output follows ($log)"
    grep -v "^WARNING: Location" "$log" >&2 || true
    exit 1
  fi
  touch "$stamp"
fi

# kubectl, helm and the control plane come from the pinned Go build (scripts/controlplane-build.sh,
# `make controlplane`), not from here.
