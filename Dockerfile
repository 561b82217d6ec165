# l2announcer node agent image: the agent (l2agent) and the debug CLI (l2dbg) on Debian 12, with
# bcc, bpftool and iproute2 from Debian. `make image` builds it from a base made locally with
# mmdebstrap (no registry pulls); elsewhere BASE can be any Debian 12 image.
#
# The node needs no kernel headers and no compiler: bcc (clang inside libbcc) compiles the
# datapath at agent start against the few UAPI headers shipped in the package, bpf/include/
# (docs/datapath.md, "What a node needs").
ARG BASE=docker.io/library/debian:bookworm-slim
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# bcc is not on PyPI: Debian's python3-bpfcc (with libbpfcc) is the one that matches its LLVM.
# bpftool and iproute2 are there for the runbook (`bpftool map dump pinned ...`, `tc filter show`).
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
        python3-bpfcc libbpfcc bpfcc-tools bpftool iproute2 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*

# A venv keeps PyPI's pinned packages apart from Debian's dist-packages; only Debian's bcc
# package is exposed to it (as scripts/bootstrap.sh does for .venv).
ENV VIRTUAL_ENV=/opt/l2announcer
RUN python3 -m venv "$VIRTUAL_ENV" \
 && mkdir -p "$VIRTUAL_ENV/debian-bcc" \
 && ln -s /usr/lib/python3/dist-packages/bcc "$VIRTUAL_ENV/debian-bcc/bcc" \
 && site=$("$VIRTUAL_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && echo "$VIRTUAL_ENV/debian-bcc" > "$site/debian-bcc.pth"
ENV PATH=/opt/l2announcer/bin:$PATH

# Dependencies first, read from pyproject.toml, so a code change does not reinstall them.
# A build behind a TLS-intercepting proxy may pass its CA bundle as the build secret `pip-ca`
# (scripts/image.sh passes this machine's); it is used by pip only and never stored in a layer.
COPY pyproject.toml /src/pyproject.toml
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md /src/README.md
COPY statedb /src/statedb
COPY common /src/common
COPY agent /src/agent
COPY dbg /src/dbg
COPY bpf /src/bpf
COPY lab /src/lab
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && pip install --no-deps /src \
 && rm -rf /src \
 && mkdir -p /run/l2announcer

# The DaemonSet passes the config directory (the mounted ConfigMap) and NODE_NAME as env vars,
# so `kubectl exec ... -- l2dbg ...` and the exec probes see the same configuration.
ENTRYPOINT ["l2agent"]
