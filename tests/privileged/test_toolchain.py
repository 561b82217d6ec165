"""make test's bootstrap must leave a working BPF toolchain: bcc compiles against the header tree
the bpf package ships, bpffs is mounted, and a tc program attaches inside a network namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from bpf.program import HEADER_TREE

PROG = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
int count_ingress(struct __sk_buff *skb) { return TC_ACT_OK; }
"""


def test_bpffs_is_mounted() -> None:
    assert os.path.ismount("/sys/fs/bpf")


def test_bcc_program_attaches_to_tc_ingress_in_a_namespace(
    make_netns: Callable[[], str],
) -> None:
    import bcc  # noqa: F401  (installed by make test; its absence is a failure, not a skip)
    from pyroute2 import NetNS

    ns = make_netns()
    code = (
        "import sys\n"
        "from bcc import BPF\n"
        "from pyroute2 import IPRoute\n"
        f"b = BPF(text={PROG!r})\n"
        "fn = b.load_func('count_ingress', BPF.SCHED_CLS)\n"
        "ip = IPRoute()\n"
        "idx = ip.link_lookup(ifname='v0')[0]\n"
        "ip.tc('add', 'clsact', idx)\n"
        "ip.tc('add-filter', 'bpf', idx, ':1', fd=fn.fd, name=fn.name,\n"
        "      parent='ffff:fff2', classid=1, direct_action=True)\n"
        "print('attached')\n"
    )
    with NetNS(ns) as n:
        n.link("add", ifname="v0", kind="veth", peer={"ifname": "v1"})
        idx = n.link_lookup(ifname="v0")[0]
        n.link("set", index=idx, state="up")
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        env={**os.environ, "BCC_KERNEL_SOURCE": str(HEADER_TREE)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "attached" in out.stdout
    shown = subprocess.run(
        ["ip", "netns", "exec", ns, "tc", "filter", "show", "dev", "v0", "ingress"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "count_ingress" in shown
