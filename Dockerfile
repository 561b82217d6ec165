# l2announcer node agent image: the agent (l2agent) and the debug CLI (l2dbg) on Debian 12, with
# bcc, bpftool and iproute2 from Debian. `make image` builds it from a base made locally with
# mmdebstrap (no registry pulls); elsewhere BASE can be any Debian 12 image.
#
# The node needs no kernel headers and no compiler: bcc (clang inside libbcc) compiles the
# datapath at agent start against the few UAPI headers shipped in the package, bpf/include/
# (docs/datapath.md, "What a node needs").
#
# Two stages: `build` makes the venv from requirements.lock (every package at one version, each
# file checked against its sha256); the image gets that venv and Debian's runtime packages only,
# with no pip, setuptools, compiler or package lists.
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/l2announcer
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

# Dependencies first, so a code change does not reinstall them. Wheels only: nothing is compiled,
# and a package without a wheel for this Python is an error, not a silent source build.
# A build behind a TLS-intercepting proxy may pass its CA bundle as the build secret `pip-ca`
# (scripts/image.sh passes this machine's); it is used by pip only and never stored in a layer.
COPY requirements.lock /src/requirements.lock
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python3 -m venv "$VIRTUAL_ENV" \
 && "$VIRTUAL_ENV/bin/pip" install --require-hashes --only-binary=:all: -r /src/requirements.lock

COPY pyproject.toml /src/pyproject.toml
COPY README.md /src/README.md
COPY statedb /src/statedb
COPY common /src/common
COPY agent /src/agent
COPY dbg /src/dbg
COPY bpf /src/bpf
COPY lab /src/lab
# The project itself with the locked setuptools (no build isolation, no index). Then what the
# agent never runs leaves the venv: pip, setuptools and wheel, and the kubernetes client's asyncio
# flavour (kubernetes/aio, 68 MB) with aiohttp and the packages only aiohttp needs; the image's
# last step imports every module the agent and l2dbg load, and the image test runs both.
# Only Debian's bcc package is exposed to the venv (as scripts/bootstrap.sh does for .venv).
RUN "$VIRTUAL_ENV/bin/pip" install --no-deps --no-build-isolation --no-index /src \
 && site=$("$VIRTUAL_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && rm -rf "$site/kubernetes/aio" \
 && "$VIRTUAL_ENV/bin/pip" uninstall -y \
        aiohttp aiohttp-retry aiohappyeyeballs aiosignal attrs frozenlist multidict propcache yarl \
        wheel packaging setuptools pip \
 && mkdir -p "$VIRTUAL_ENV/debian-bcc" \
 && ln -s /usr/lib/python3/dist-packages/bcc "$VIRTUAL_ENV/debian-bcc/bcc" \
 && echo "$VIRTUAL_ENV/debian-bcc" > "$site/debian-bcc.pth"

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/l2announcer \
    PATH=/opt/l2announcer/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# bcc is not on PyPI: Debian's python3-bpfcc (with libbpfcc) is the one that matches its LLVM,
# and LLVM with clang is most of this layer. bpftool and iproute2 are there for the runbook
# (`bpftool map dump pinned ...`, `tc filter show`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-bpfcc libbpfcc bpftool iproute2 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/apt \
        /var/log/dpkg.log

COPY --from=build /opt/l2announcer /opt/l2announcer
RUN python3 -c 'import agent.agent, agent.main, dbg.main, bpf.loader, bcc' \
 && mkdir -p /run/l2announcer

# The DaemonSet passes the config directory (the mounted ConfigMap) and NODE_NAME as env vars,
# so `kubectl exec ... -- l2dbg ...` sees the same configuration.
ENTRYPOINT ["l2agent"]
