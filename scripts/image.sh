#!/usr/bin/env bash
# Builds the l2announcer container image from nothing but Debian packages and the PyPI packages
# pinned in requirements.lock, then smoke-tests it (`make image`):
#
#   1. installs podman, buildah and mmdebstrap when missing (root only; a non-root user needs
#      them installed, and /etc/subuid and /etc/subgid ranges for rootless podman);
#   2. makes the base image with mmdebstrap (Debian 12 bookworm, minbase, merged /usr without the
#      usrmerge package and so without Perl, from the same mirror as this machine's apt sources)
#      and imports it with `podman import`; it is made again when its recipe changes, or with
#      IMAGE_REBASE=1;
#   3. `podman build --isolation chroot` of the Dockerfile on that base (no registry pulls),
#      skipped when the image already carries the hash of exactly these inputs (the base, the
#      Dockerfile, the lock file and every file of the build context): a second `make image`
#      with nothing changed takes a second;
#   4. quick checks with `buildah run --isolation chroot`: `l2agent --help`, `l2dbg --help`,
#      `import bcc`, `bpftool version`, no kernel headers in the image; prints the image's size.
#
#   `datapath`: loads the real datapath in the image with only the DaemonSet's capabilities (see
#      datapath_caps below). The full smoke test, the agent run from the image in a lab node with
#      the client's ARP answered, is tests/e2e/test_image.py (tests/e2e/image_agent.py).
#
# Usage: scripts/image.sh [all|base|build|smoke|datapath|inputs]   (default: all)
# Environment: IMAGE (default localhost/l2announcer:dev), BASE_IMAGE
# (default localhost/l2announcer-base:bookworm), IMAGE_REBASE=1, IMAGE_REBUILD=1 (build even when
# the inputs are unchanged), PIP_CA (the CA bundle pip trusts during the build; default this
# machine's /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/l2announcer:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/l2announcer-base:bookworm}
SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PIP_CA=${PIP_CA:-/etc/ssl/certs/ca-certificates.crt}
TOOLS=(podman buildah mmdebstrap)
INPUTS_LABEL=io.l2announcer.inputs
RECIPE_LABEL=io.l2announcer.base-recipe

say() { printf 'image: %s\n' "$*"; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

install_tools() {
  local missing=() t
  for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
  ((${#missing[@]})) || return 0
  [ "$(id -u)" -eq 0 ] || die "${missing[*]} missing; install them as root (apt-get install ${missing[*]})"
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The first URI of this machine's apt sources that looks like $1 (a path suffix such as /debian),
# so the base comes from the mirror this machine is configured to use.
host_uri() {
  local suffix=$1 uri
  uri=$(
    {
      grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | sed -E 's/^[[:space:]]*URIs:[[:space:]]*//' | tr ' ' '\n'
      grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
    } | grep -E "${suffix}/?\$" | head -n1
  ) || true
  printf '%s' "${uri%/}"
}

label_of() { podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null || true; }

make_base() {
  local main security work start recipe args
  main=$(host_uri /debian); main=${main:-http://deb.debian.org/debian}
  security=$(host_uri /debian-security); security=${security:-http://deb.debian.org/debian-security}
  # minbase has apt (the Dockerfile installs with it) and nothing for a human: documentation,
  # man pages and translations are left out of this and every later install (the dpkg options
  # stay in the image); copyright files stay. merged /usr comes from mmdebstrap's hook, as
  # debootstrap makes it, instead of the usrmerge package, which would bring Perl (50 MB).
  args=(--variant=minbase --format=tar
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*')
  recipe=$(printf '%s\n' "$SUITE" "$main" "$security" "${args[@]}" | sha256sum | cut -c1-16)
  if [ "${IMAGE_REBASE:-0}" != 1 ] && [ "$(label_of "$BASE_IMAGE" "$RECIPE_LABEL")" = "$recipe" ]; then
    say "base $BASE_IMAGE is up to date (IMAGE_REBASE=1 makes it again)"
    return 0
  fi
  [ -r "$KEYRING" ] || die "$KEYRING is missing (apt-get install debian-archive-keyring)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  cat >"$work/debian.sources" <<EOF
Types: deb
URIs: $main
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: $KEYRING

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: $KEYRING
EOF
  say "making base $BASE_IMAGE with mmdebstrap ($SUITE from $main)"
  start=$SECONDS
  mmdebstrap --quiet "${args[@]}" "$SUITE" "$work/base.tar" "$work/debian.sources"
  podman import --quiet \
    --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL $RECIPE_LABEL=$recipe" \
    "$work/base.tar" "$BASE_IMAGE" >/dev/null
  say "base made in $((SECONDS - start)) s"
}

# The build context's files as .dockerignore admits them (its `!` lines), without bytecode.
context_files() {
  local paths
  mapfile -t paths < <(sed -n 's/^!//p' .dockerignore)
  find "${paths[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort
}

# A hash of everything the image is made from: the base image, the Dockerfile, its ignore file
# and the build context (requirements.lock among it).
inputs_hash() {
  local base
  base=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) || die "no base $BASE_IMAGE"
  {
    printf 'base %s\n' "$base"
    sha256sum Dockerfile .dockerignore
    context_files | tr '\n' '\0' | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

build() {
  local start=$SECONDS inputs old
  inputs=$(inputs_hash)
  if [ "${IMAGE_REBUILD:-0}" != 1 ] && [ "$(label_of "$IMAGE" "$INPUTS_LABEL")" = "$inputs" ]; then
    say "$IMAGE is up to date (inputs $inputs; IMAGE_REBUILD=1 builds it again)"
    return 0
  fi
  old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null) || true
  say "building $IMAGE (podman build --isolation chroot, base $BASE_IMAGE, inputs $inputs)"
  # This machine's CA bundle goes to pip as a build secret (a TLS-intercepting proxy's CA is in
  # it where there is one); it is not stored in the image.
  podman build --isolation chroot --pull=never --build-arg "BASE=$BASE_IMAGE" \
    --secret "id=pip-ca,src=$PIP_CA" --label "$INPUTS_LABEL=$inputs" -t "$IMAGE" -f Dockerfile .
  # The image this one replaces, untagged now (its layers that are still used stay as cache).
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
  say "built in $((SECONDS - start)) s"
}

smoke() {
  local ctr failed=0 size err
  podman image exists "$IMAGE" || die "$IMAGE does not exist; run: scripts/image.sh build"
  ctr=$(buildah from --pull-never "$IMAGE")
  err=$(mktemp)
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -f "$err"' RETURN
  run() { buildah run --isolation chroot "$ctr" -- "$@"; }
  check() {
    local name=$1; shift
    if run "$@" >/dev/null 2>"$err"; then
      say "smoke PASSED: $name"
    else
      say "smoke FAILED: $name"; cat "$err" >&2; failed=1
    fi
  }
  check "l2agent --help" l2agent --help
  check "l2dbg --help" l2dbg --help
  check "import bcc" python3 -c 'import bcc'
  check "bpftool version" bpftool version
  check "no kernel headers in the image" sh -c \
    '! find /lib/modules /usr/src /usr/include/linux -mindepth 1 2>/dev/null | grep -q .'
  size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
  say "image $IMAGE: $((size / 1000000)) MB"
  return "$failed"
}

# Loads the real datapath inside the image with only the DaemonSet's capabilities (CAPS, default
# "NET_ADMIN NET_RAW BPF") and its bpffs mount, in a throwaway network namespace with a veth
# pair: compile (bcc, against the headers in the package), pin the maps, load and attach the tc
# program, add a responder entry, send a gratuitous ARP. Seccomp is unconfined as in the
# DaemonSet. Needs root and bpffs on /sys/fs/bpf.
datapath_caps() {
  local caps=${CAPS:-NET_ADMIN NET_RAW BPF} ns=l2img$$ pin ctr c idx drops=() adds=() out rc
  podman image exists "$IMAGE" || die "$IMAGE does not exist; run: scripts/image.sh build"
  pin=/sys/fs/bpf/l2announcer-image-test-$$
  # buildah run has no --cap-drop=all that keeps later adds: drop its defaults one by one.
  for c in CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE \
           SYS_CHROOT SETFCAP NET_RAW MKNOD AUDIT_WRITE; do
    [[ " $caps " == *" $c "* ]] || drops+=(--cap-drop "CAP_$c")
  done
  for c in $caps; do adds+=(--cap-add "CAP_$c"); done
  ip netns add "$ns"
  ctr=$(buildah from --pull-never --security-opt seccomp=unconfined "$IMAGE")
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; ip netns del "$ns" 2>/dev/null || true; rm -rf "$pin"' RETURN
  ip -n "$ns" link add l2a type veth peer name l2b
  ip -n "$ns" link set l2a up
  ip -n "$ns" link set l2b up
  idx=$(ip -n "$ns" -o link show l2a | cut -d: -f1)
  mkdir -p "$pin"
  # The bpffs goes to /bpffs: under buildah's chroot isolation /sys/fs/bpf would be read-only
  # (a Kubernetes hostPath mount there is writable).
  set +e
  out=$(printf 'add 192.0.2.10 %s\ngarp 192.0.2.10 %s\nitems\ndisable\n' "$idx" "$idx" |
    nsenter --net="/run/netns/$ns" buildah run --isolation chroot "${drops[@]}" "${adds[@]}" \
      -v /sys/fs/bpf:/bpffs \
      "$ctr" -- python3 -m bpf.loader --bpf-root "/bpffs/${pin#/sys/fs/bpf/}" --attach l2a 2>&1)
  rc=$?
  set -e
  printf '%s\n' "$out" | sed 's/^/image:   /'
  if [ "$rc" -eq 0 ] && ! grep -q '^err ' <<<"$out" && grep -q '^ready ' <<<"$out"; then
    say "datapath PASSED with capabilities: $caps"
  else
    say "datapath FAILED with capabilities: $caps"
    return 1
  fi
}

case "${1:-all}" in
  all) install_tools; make_base; build; smoke ;;
  base) install_tools; make_base ;;
  build) install_tools; make_base; build ;;
  smoke) smoke ;;
  datapath) datapath_caps ;;
  inputs) inputs_hash ;;
  *) die "unknown step ${1}; use all, base, build, smoke, datapath or inputs" ;;
esac
