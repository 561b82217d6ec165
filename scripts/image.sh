#!/usr/bin/env bash
# Builds the l2announcer container image from nothing but Debian and PyPI packages, then
# smoke-tests it. Run as root on Debian 12 (`make image`):
#
#   1. installs podman, buildah and mmdebstrap when missing;
#   2. makes the base image with mmdebstrap (Debian 12 bookworm, minbase, from the same mirror as
#      this machine's apt sources) and imports it with `podman import` - once; IMAGE_REBASE=1
#      makes it again;
#   3. `podman build --isolation chroot` of the Dockerfile on that base (no registry pulls);
#   4. smoke test with `buildah run --isolation chroot`: `l2dbg --help`, `import bcc`,
#      `bpftool version`, and `l2agent --help` when the console script exists (reported as
#      SKIPPED otherwise);
#   5. prints the build time and the image size.
#
#   (extra) `datapath`: loads the real datapath in the image with only the DaemonSet's
#      capabilities (see datapath_caps below); the image test runs it.
#
# Usage: scripts/image.sh [all|base|build|smoke|datapath]   (default: all)
# Environment: IMAGE (default localhost/l2announcer:dev), BASE_IMAGE
# (default localhost/l2announcer-base:bookworm), IMAGE_REBASE=1, PIP_CA (the CA bundle pip
# trusts during the build; default this machine's /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/l2announcer:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/l2announcer-base:bookworm}
SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PIP_CA=${PIP_CA:-/etc/ssl/certs/ca-certificates.crt}
TOOLS=(podman buildah mmdebstrap)

say() { printf 'image: %s\n' "$*"; }
die() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

install_tools() {
  local missing=() t
  for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
  ((${#missing[@]})) || return 0
  [ "$(id -u)" -eq 0 ] || die "needs root to install ${missing[*]} (and to build with chroot isolation)"
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

make_base() {
  if [ "${IMAGE_REBASE:-0}" != 1 ] && podman image exists "$BASE_IMAGE"; then
    say "base $BASE_IMAGE exists (IMAGE_REBASE=1 makes it again)"
    return 0
  fi
  local main security work start
  main=$(host_uri /debian); main=${main:-http://deb.debian.org/debian}
  security=$(host_uri /debian-security); security=${security:-http://deb.debian.org/debian-security}
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
  # Documentation, man pages and translations are left out of this and every later install
  # (mmdebstrap keeps the dpkg options in the image); copyright files stay.
  mmdebstrap --quiet --variant=minbase --include=ca-certificates --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$SUITE" "$work/base.tar" "$work/debian.sources"
  podman import --quiet \
    --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/base.tar" "$BASE_IMAGE" >/dev/null
  say "base made in $((SECONDS - start)) s"
}

build() {
  local start=$SECONDS
  say "building $IMAGE (podman build --isolation chroot, base $BASE_IMAGE)"
  # This machine's CA bundle goes to pip as a build secret (a TLS-intercepting proxy's CA is in
  # it where there is one); it is not stored in the image.
  podman build --isolation chroot --pull=never --build-arg "BASE=$BASE_IMAGE" \
    --secret "id=pip-ca,src=$PIP_CA" -t "$IMAGE" -f Dockerfile .
  say "built in $((SECONDS - start)) s"
}

smoke() {
  local ctr failed=0
  podman image exists "$IMAGE" || die "$IMAGE does not exist; run: scripts/image.sh build"
  ctr=$(buildah from --pull-never "$IMAGE")
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' RETURN
  run() { buildah run --isolation chroot "$ctr" -- "$@"; }
  check() {
    local name=$1; shift
    if run "$@" >/dev/null 2>"${TMPDIR:-/tmp}/l2announcer-smoke.err"; then
      say "smoke PASSED: $name"
    else
      say "smoke FAILED: $name"; cat "${TMPDIR:-/tmp}/l2announcer-smoke.err" >&2; failed=1
    fi
  }
  check "l2dbg --help" l2dbg --help
  check "import bcc" python3 -c 'import bcc; print(bcc.__file__)'
  check "bpftool version" bpftool version
  if run sh -c 'command -v l2agent' >/dev/null 2>&1; then
    check "l2agent --help" l2agent --help
  else
    say "smoke SKIPPED: l2agent --help (no l2agent console script in the image yet: the agent is not built)"
  fi
  local size
  size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
  say "image $IMAGE: $((size / 1000000)) MB"
  return "$failed"
}

# Loads the real datapath inside the image with only the DaemonSet's capabilities (CAPS, default
# "NET_ADMIN NET_RAW BPF") and its mounts (host headers read-only, bpffs), in a throwaway network
# namespace with a veth pair: compile (bcc), pin the maps, load and attach the tc program, add a
# responder entry, send a gratuitous ARP. Seccomp is unconfined as in the DaemonSet. Needs root,
# bpffs on /sys/fs/bpf and kernel headers under /lib/modules (make test's bootstrap links them).
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
      -v /lib/modules:/lib/modules:ro -v /usr/src:/usr/src:ro -v /sys/fs/bpf:/bpffs \
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
  *) die "unknown step ${1}; use all, base, build, smoke or datapath" ;;
esac
