#!/usr/bin/env bash
# Builds the lab's real control plane (etcd, kube-apiserver, kube-controller-manager, kubectl,
# helm) from the pinned Go modules in lab/go/ into a cache outside the work tree, keyed by those
# modules and the Go version: a second run finds the binaries and returns at once. Prints the
# directory that holds the binaries as its last line.
#
#   scripts/controlplane-build.sh            build if missing, print the bin directory
#   L2ANNOUNCER_CONTROLPLANE_CACHE=DIR ...   cache root (default /var/cache/l2announcer/controlplane)
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/.."
root=$PWD/lab/go
# Root's default is shared by every checkout on the machine; anyone else caches in their home.
default_cache=/var/cache/l2announcer/controlplane
[ "$(id -u)" -eq 0 ] || default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/l2announcer/controlplane
cache_root=${L2ANNOUNCER_CONTROLPLANE_CACHE:-$default_cache}

# Go's own installer puts it in /usr/local/go, which a non-login shell may not have on PATH; it
# goes first, before an older distribution Go (Debian 12's is 1.19).
[ -x /usr/local/go/bin/go ] && PATH=/usr/local/go/bin:$PATH
go_minor=$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
if [ -z "$go_minor" ] || [ "$go_minor" -lt 26 ]; then
    echo "controlplane-build: the control plane needs Go >= 1.26 on PATH (found: $(go env GOVERSION 2>/dev/null || echo none))" >&2
    exit 1
fi
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

version_of() { (cd "$root/$1" && go list -m -f '{{.Version}}' "$2"); }
k8s=$(version_of kubernetes k8s.io/kubernetes)
etcd=$(version_of etcd go.etcd.io/etcd/server/v3)
helm=$(version_of helm helm.sh/helm/v4)
# The key: what decides the binaries (Go, the modules, this script's flags).
key=$( { go version; cat "$root"/*/go.mod "$root"/*/go.sum "$self"; } | sha256sum | cut -c1-12)
dest=$cache_root/k8s-$k8s-etcd-$etcd-helm-$helm-$key
binaries=(etcd etcdctl kube-apiserver kube-controller-manager kubectl helm)

complete() { for b in "${binaries[@]}"; do [ -x "$dest/bin/$b" ] || return 1; done; }
if complete; then
    echo "$dest/bin"
    exit 0
fi

# One build at a time (make test and a lab may ask at once); whoever waited finds it done.
mkdir -p "$cache_root"
exec 9>"$cache_root/.lock"
if ! flock -n 9; then
    echo "controlplane-build: waiting for another build of the control plane to finish" >&2
    flock 9
fi
if complete; then
    echo "$dest/bin"
    exit 0
fi

# Kubernetes stamps its version at link time (as its hack/lib/version.sh does); without it
# /version says v0.0.0-master and kubectl and helm see a bogus server version.
minor=${k8s#v1.}; minor=${minor%%.*}
stamp="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp+=" -X $p.gitVersion=$k8s -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    stamp+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

echo "controlplane-build: building Kubernetes $k8s, etcd $etcd, helm $helm into $dest" >&2
echo "controlplane-build: the first build takes about 8 minutes on 2 cores (downloads included)" >&2
rm -rf "$cache_root"/.build.*  # what a killed build left (we hold the lock)
work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$SECONDS
step() {
    local name=$1 dir=$2; shift 2
    local t=$SECONDS
    echo "controlplane-build: $name ..." >&2
    (cd "$root/$dir" && go build -trimpath "$@")
    echo "controlplane-build: $name done in $((SECONDS - t)) s" >&2
}
step "etcd, etcdctl" etcd -ldflags "-s -w" -o "$work/etcd" go.etcd.io/etcd/server/v3
(cd "$root/etcd" && go build -trimpath -ldflags "-s -w" -o "$work/etcdctl" go.etcd.io/etcd/etcdctl/v3)
step "kube-apiserver, kube-controller-manager, kubectl" kubernetes -ldflags "$stamp" -o "$work/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
# helm's own release builds stamp the full version (its source says only the minor).
step helm helm -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$helm" \
    -o "$work/helm" helm.sh/helm/v4/cmd/helm

mkdir -p "$dest"
rm -rf "$dest/bin"
mv "$work" "$dest/bin"
trap - EXIT
chmod 755 "$dest/bin"
echo "controlplane-build: built in $((SECONDS - start)) s" >&2
echo "$dest/bin"
