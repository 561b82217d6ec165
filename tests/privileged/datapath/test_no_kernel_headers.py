"""A node without kernel headers: the datapath compiles against the tree shipped in the package.

The loader runs in a private mount namespace where empty, read-only tmpfs mounts cover
/lib/modules, /usr/src and /usr/include (and /dev/null covers /sys/kernel/kheaders.tar.xz if the
kernel has it), so neither the node's headers nor Debian's UAPI headers can be read. A control in
the same namespace shows the hiding is real: bcc's default compile, against the node's headers,
fails there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable

from bpf.attach import FILTER_NAME
from bpf.maps import RESPONDER_MAP_NAME, ResponderMap
from bpf.program import HEADER_TREE
from tests.privileged.datapath.lab import REPO, VIP, Lab, Loader, arping, sh

HIDDEN = ("/lib/modules", "/usr/src", "/usr/include")
KHEADERS = "/sys/kernel/kheaders.tar.xz"

# unshare's mount namespace is private by default, so these mounts never reach the host; the
# loader (or the probe below) is exec'd in their place and they vanish with it.
_HIDE_SCRIPT = (
    "set -e; "
    + " ".join(f"[ ! -d {d} ] || mount -t tmpfs -o ro,size=4k none {d}; " for d in HIDDEN)
    + f"[ ! -e {KHEADERS} ] || mount --bind /dev/null {KHEADERS}; "
    + 'exec "$@"'
)
NO_HEADERS = ("unshare", "--mount", "sh", "-c", _HIDE_SCRIPT, "no-headers")

# The smallest tc program, compiled by bcc the way it does by default, or against our tree.
_PROBE = r"""
import sys
from bcc import BPF
text = b'''
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
int probe(struct __sk_buff *skb) { return TC_ACT_OK; }
'''
try:
    BPF(text=text).load_func(b"probe", BPF.SCHED_CLS)
except Exception as e:
    print(f"failed: {e}", flush=True)
    sys.exit(1)
print("compiled", flush=True)
"""

StartLoader = Callable[..., Loader]


def _compile_probe(kernel_source: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BCC_KERNEL_SOURCE"}
    if kernel_source is not None:
        env["BCC_KERNEL_SOURCE"] = kernel_source
    return subprocess.run(
        [*NO_HEADERS, sys.executable, "-c", _PROBE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_headers_are_really_hidden() -> None:
    listing = sh(*NO_HEADERS, "sh", "-c", "ls -A " + " ".join(HIDDEN))
    assert [line for line in listing.splitlines() if line and not line.endswith(":")] == []

    default = _compile_probe(None)
    assert default.returncode == 1, default.stdout + default.stderr
    assert "Unable to find kernel headers" in default.stdout
    assert "failed: Failed to compile BPF module" in default.stdout

    # The control's control: the same probe in the same namespace compiles against our tree.
    shipped = _compile_probe(str(HEADER_TREE))
    assert (shipped.returncode, shipped.stdout) == (0, "compiled\n"), shipped.stderr


def test_arp_is_answered_with_the_kernel_headers_hidden(
    lab: Lab, bpf_root: str, loaders: StartLoader
) -> None:
    loader = loaders(lab.node, bpf_root, "--attach", "n0", wrap=NO_HEADERS)
    assert loader.cmd(f"add {VIP} {lab.node_ifindex}") is True

    res = arping(lab.client, VIP, 3)
    assert res.received == 3
    assert res.macs == {lab.node_mac.hex(":")}

    # Same datapath as with the node's headers: counters, BTF field names, the tc filter.
    with ResponderMap.open(f"{bpf_root}/{RESPONDER_MAP_NAME}", readonly=True) as m:
        assert m.get(VIP, lab.node_ifindex) == 3
    dump = json.loads(sh("bpftool", "map", "dump", "pinned", f"{bpf_root}/{RESPONDER_MAP_NAME}"))
    ip4 = int.from_bytes(socket.inet_aton(VIP), sys.byteorder)
    assert dump == [
        {"key": {"ip4": ip4, "ifindex": lab.node_ifindex}, "value": {"responses_sent": 3}}
    ]
    tc = sh("ip", "netns", "exec", lab.node, "tc", "filter", "show", "dev", "n0", "ingress")
    assert FILTER_NAME in tc
