"""Attach the responder to an interface's tc ingress hook (clsact, direct-action) with pyroute2.

Our filter is identified by a fixed (priority, handle) and its name. Attaching always uses
``tc filter replace`` semantics on that (priority, handle): the kernel swaps the program of the
existing filter atomically (cls_bpf replaces the list element under RCU), so a restarted agent
adopts the previous agent's filter with no instant where ARP goes unanswered, and attaching twice
is a no-op. The filter matches protocol ARP only, so the program never runs for other traffic.

Everything here acts on the calling process's network namespace.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

FILTER_NAME = "l2announcer_l2_responder"
FILTER_PRIO = 1
FILTER_HANDLE = 0x4C32  # "L2"
ETH_P_ARP = 0x0806
# The clsact qdisc's hooks: TC_H_MAKE(TC_H_CLSACT = 0xFFFFFFF1, TC_H_MIN_INGRESS / _EGRESS).
TC_H_INGRESS_PARENT = 0xFFFFFFF2
TC_H_EGRESS_PARENT = 0xFFFFFFF3


class AttachError(RuntimeError):
    """tc refused to attach or detach; the message names the interface and the reason."""


@contextmanager
def _iproute() -> Iterator[Any]:
    from pyroute2 import IPRoute  # deferred: pyroute2's import costs ~100 ms

    ip = IPRoute()
    try:
        yield ip
    finally:
        ip.close()


def _filters(ip: Any, ifindex: int, parent: int) -> list[Any]:
    try:
        return list(ip.get_filters(index=ifindex, parent=parent))
    except Exception as e:
        if getattr(e, "code", None) in (errno.EINVAL, errno.ENOENT):
            return []  # no clsact qdisc
        raise


def _is_ours(msg: Any) -> bool:
    return bool(
        msg.get_attr("TCA_KIND") == "bpf"
        and (msg["info"] >> 16) == FILTER_PRIO
        and msg["handle"] == FILTER_HANDLE
    )


def _ours(ip: Any, ifindex: int) -> list[Any]:
    return [m for m in _filters(ip, ifindex, TC_H_INGRESS_PARENT) if _is_ours(m)]


def link_mac(ifindex: int) -> bytes:
    """The interface's hardware address (what the program puts in its replies)."""
    with _iproute() as ip:
        try:
            links = ip.get_links(ifindex)
        except Exception as e:
            raise AttachError(f"interface {ifindex} not found: {e}") from e
        addr = links[0].get_attr("IFLA_ADDRESS") if links else None
    if not addr:
        raise AttachError(f"interface {ifindex} has no hardware address")
    mac = bytes.fromhex(str(addr).replace(":", ""))
    if len(mac) != 6:
        raise AttachError(f"interface {ifindex} is not Ethernet (address {addr})")
    return mac


def attach(ifindex: int, prog_fd: int) -> None:
    """Attach (or atomically replace) our filter on the clsact ingress of ``ifindex``."""
    with _iproute() as ip:
        try:
            ip.tc("add", "clsact", ifindex)
        except Exception as e:
            if getattr(e, "code", None) != errno.EEXIST:
                raise AttachError(f"add clsact qdisc on interface {ifindex}: {e}") from e
        try:
            ip.tc(
                "replace-filter",
                "bpf",
                ifindex,
                FILTER_HANDLE,
                fd=prog_fd,
                name=FILTER_NAME,
                parent=TC_H_INGRESS_PARENT,
                prio=FILTER_PRIO,
                protocol=ETH_P_ARP,
                direct_action=True,
            )
        except Exception as e:
            raise AttachError(f"attach to interface {ifindex}: {e}") from e


def detach(ifindex: int) -> bool:
    """Remove our filter from ``ifindex``; False when it was not attached (not an error).

    The clsact qdisc is removed too when no filter is left on it, so a disabled feature leaves
    the interface as it found it; a qdisc that still carries other filters is left alone.
    """
    with _iproute() as ip:
        try:
            found = bool(_ours(ip, ifindex))
        except Exception as e:
            if getattr(e, "code", None) in (errno.ENODEV, errno.ENOENT):
                return False
            raise AttachError(f"list filters on interface {ifindex}: {e}") from e
        if not found:
            return False
        try:
            ip.tc(
                "del-filter",
                "bpf",
                ifindex,
                FILTER_HANDLE,
                parent=TC_H_INGRESS_PARENT,
                prio=FILTER_PRIO,
                protocol=ETH_P_ARP,
            )
        except Exception as e:
            if getattr(e, "code", None) not in (errno.ENOENT, errno.ENODEV):
                raise AttachError(f"detach from interface {ifindex}: {e}") from e
        if not _filters(ip, ifindex, TC_H_INGRESS_PARENT) and not _filters(
            ip, ifindex, TC_H_EGRESS_PARENT
        ):
            try:
                ip.tc("del", "clsact", ifindex)
            except Exception as e:
                if getattr(e, "code", None) not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
                    raise AttachError(f"remove clsact from interface {ifindex}: {e}") from e
        return True


def attached_ifindexes() -> list[int]:
    """Interfaces of this namespace that carry our filter (ours or a previous agent's)."""
    out = []
    with _iproute() as ip:
        for link in ip.get_links():
            idx = int(link["index"])
            try:
                if _ours(ip, idx):
                    out.append(idx)
            except Exception:
                continue
    return sorted(out)
