"""Attach the responder to an interface's tc ingress hook (clsact, direct-action) with pyroute2.

Our filter is identified by a fixed (priority, handle) AND its name: a filter is ours only when
all three match, so nothing here detaches, replaces or counts a filter someone else put there.
Attaching always uses ``tc filter replace`` semantics on that (priority, handle): the kernel swaps
the program of the existing filter atomically (cls_bpf replaces the list element under RCU), so a
restarted agent adopts the previous agent's filter with no instant where ARP goes unanswered, and
attaching twice is a no-op. The program is attached as two filters with the same handle and
name: protocol ARP at priority 1 and protocol IPv6 at priority 2 (a tc priority holds one
protocol), so it never runs for IPv4 or other traffic.

We do not answer beside another responder: before attaching, :func:`attach` looks for BPF
programs of others on the interface's ingress that see ARP or IPv6 frames (a tc bpf filter of
protocol ``all``, ``arp`` or ``ipv6``, or any tcx ingress program, as Cilium's ``cil_from_netdev``
is) and refuses
with :class:`ForeignProgramError` naming them, removing our own filter from that interface if a
previous agent left one there. Two responders for one address would both answer; which one
wins a client's cache is a race.

Everything here acts on the calling process's network namespace.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bpf import syscall

FILTER_NAME = "l2announcer_l2_responder"
FILTER_PRIO = 1
FILTER_PRIO_V6 = 2
FILTER_HANDLE = 0x4C32  # "L2"
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
# Our filters: (priority, protocol).
OUR_FILTERS = ((FILTER_PRIO, ETH_P_ARP), (FILTER_PRIO_V6, ETH_P_IPV6))
# The clsact qdisc's hooks: TC_H_MAKE(TC_H_CLSACT = 0xFFFFFFF1, TC_H_MIN_INGRESS / _EGRESS).
TC_H_INGRESS_PARENT = 0xFFFFFFF2
TC_H_EGRESS_PARENT = 0xFFFFFFF3
ETH_P_ALL = 0x0003
_PROTOCOL_NAMES = {ETH_P_ALL: "all", ETH_P_ARP: "arp", ETH_P_IPV6: "ipv6"}
TCA_BPF_ID = 11  # the attached program's id; pyroute2 does not decode it, so it is read raw


class AttachError(RuntimeError):
    """tc refused to attach or detach; the message names the interface and the reason."""


@dataclass(frozen=True, slots=True)
class OtherProgram:
    """A BPF program of someone else's on an interface's ingress that sees ARP or IPv6 frames."""

    name: str  # the tc filter's name, or the tcx program's
    prog_id: int | None
    hook: str  # "tc filter pref 1 protocol all", "tcx"

    def __str__(self) -> str:
        ident = f"program id {self.prog_id}" if self.prog_id is not None else "program id unknown"
        if not self.name:  # a tcx program's name needs CAP_SYS_ADMIN, which the agent lacks
            return f"{ident} ({self.hook}; bpftool prog show id {self.prog_id} names it)"
        return f"{self.name} ({ident}, {self.hook})"


class ForeignProgramError(AttachError):
    """Another responder may answer ARP or NDP on the interface, so we do not attach there."""

    def __init__(self, ifname: str, ifindex: int, others: list[OtherProgram]) -> None:
        self.ifname = ifname
        self.ifindex = ifindex
        self.others = others
        listed = ", ".join(str(o) for o in others)
        super().__init__(
            f"not answering ARP or NDP on {ifname}: another BPF program on its ingress sees "
            "ARP or IPv6 "
            f"({listed}), and two responders would both answer; remove it from {ifname} or leave "
            f"{ifname} out of the policies' interfaces"
        )


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


def _filter_name(msg: Any) -> str:
    opts = msg.get_attr("TCA_OPTIONS")
    name = opts.get_attr("TCA_BPF_NAME") if opts else None
    return str(name) if name else ""


def _filter_prog_id(msg: Any) -> int | None:
    """The program id of a bpf filter (TCA_BPF_ID), read from the raw attribute; None if absent."""
    opts = msg.get_attr("TCA_OPTIONS")
    if not opts:
        return None
    try:
        for slot in opts["attrs"]:
            nla = slot.cell[1]
            raw = bytes(nla.data[nla.offset : nla.offset + nla.length])
            length, kind = struct.unpack_from("=HH", raw)
            if kind == TCA_BPF_ID and length >= 8:
                return int(struct.unpack_from("=I", raw, 4)[0])
    except Exception:  # the layout of pyroute2's parsed attributes is its own business
        return None
    return None


def _is_ours(msg: Any) -> bool:
    return bool(
        msg.get_attr("TCA_KIND") == "bpf"
        and (msg["info"] >> 16, socket.ntohs(msg["info"] & 0xFFFF)) in OUR_FILTERS
        and msg["handle"] == FILTER_HANDLE
        and _filter_name(msg) == FILTER_NAME
    )


def _ours(ip: Any, ifindex: int) -> list[Any]:
    return [m for m in _filters(ip, ifindex, TC_H_INGRESS_PARENT) if _is_ours(m)]


def _others_seeing_arp(ip: Any, ifindex: int) -> list[OtherProgram]:
    found = []
    for m in _filters(ip, ifindex, TC_H_INGRESS_PARENT):
        if m["handle"] == 0 or _is_ours(m):
            continue  # handle 0: the dump's entry for a (priority, protocol) chain, not a filter
        if m.get_attr("TCA_KIND") != "bpf":
            continue  # u32, flower, ...: classifiers, not programs that could answer ARP
        protocol = socket.ntohs(m["info"] & 0xFFFF)
        proto = _PROTOCOL_NAMES.get(protocol)
        if proto is None:
            continue  # never sees an ARP or IPv6 frame
        found.append(
            OtherProgram(
                _filter_name(m),
                _filter_prog_id(m),
                f"tc filter pref {m['info'] >> 16} protocol {proto}",
            )
        )
    for prog_id in syscall.tcx_ingress_programs(ifindex):
        try:
            name = syscall.prog_info(prog_id).name
        except OSError:
            name = ""  # no CAP_SYS_ADMIN (the DaemonSet's case), or gone: the id still names it
        found.append(OtherProgram(name, prog_id, "tcx"))
    return found


def other_programs(ifindex: int) -> list[OtherProgram]:
    """BPF programs of others on ``ifindex``'s ingress that see ARP or IPv6 frames (see the module
    doc)."""
    with _iproute() as ip:
        return _others_seeing_arp(ip, ifindex)


def ifname(ifindex: int) -> str:
    """The interface's name in this namespace, for messages."""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"interface {ifindex}"


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
    """Attach (or atomically replace) our filter on the clsact ingress of ``ifindex``.

    Raises :class:`ForeignProgramError`, and removes our own filter from ``ifindex`` if one is
    there, when another program on the ingress sees ARP or IPv6 frames.
    """
    with _iproute() as ip:
        try:
            others = _others_seeing_arp(ip, ifindex)
        except Exception as e:
            raise AttachError(f"list the programs on interface {ifindex}: {e}") from e
        if others:
            if _ours(ip, ifindex):
                _del_ours(ip, ifindex)
            raise ForeignProgramError(ifname(ifindex), ifindex, others)
        try:
            ip.tc("add", "clsact", ifindex)
        except Exception as e:
            if getattr(e, "code", None) != errno.EEXIST:
                raise AttachError(f"add clsact qdisc on interface {ifindex}: {e}") from e
        for prio, protocol in OUR_FILTERS:  # ARP first: an older agent's filter is swapped at once
            try:
                ip.tc(
                    "replace-filter",
                    "bpf",
                    ifindex,
                    FILTER_HANDLE,
                    fd=prog_fd,
                    name=FILTER_NAME,
                    parent=TC_H_INGRESS_PARENT,
                    prio=prio,
                    protocol=protocol,
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
        _del_ours(ip, ifindex)
        return True


def _del_ours(ip: Any, ifindex: int) -> None:
    """Remove our filters, and the clsact qdisc if nothing else is left on it."""
    present = {(m["info"] >> 16, socket.ntohs(m["info"] & 0xFFFF)) for m in _ours(ip, ifindex)}
    for prio, protocol in OUR_FILTERS:
        if (prio, protocol) not in present:
            continue  # an older agent attached only the first; never delete someone else's
        try:
            ip.tc(
                "del-filter",
                "bpf",
                ifindex,
                FILTER_HANDLE,
                parent=TC_H_INGRESS_PARENT,
                prio=prio,
                protocol=protocol,
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


def attached_ifindexes() -> list[int]:
    """Interfaces of this namespace that carry our filter (ours or a previous agent's; never a
    filter of someone else's at our priority and handle, see :func:`_is_ours`)."""
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


def attached_among(ifindexes: Iterable[int]) -> set[int]:
    """Which of ``ifindexes`` carry every one of our filters (ARP and IPv6), asking only these
    interfaces: the responder's verifier asks every second, and a node may have hundreds of pod
    interfaces. An interface that lost one of them (``tc filter del ... pref 1``) is not in it:
    it answers only half of what it should."""
    out = set()
    wanted = set(OUR_FILTERS)
    with _iproute() as ip:
        for idx in ifindexes:
            try:
                found = {
                    (m["info"] >> 16, socket.ntohs(m["info"] & 0xFFFF)) for m in _ours(ip, idx)
                }
            except Exception:
                continue  # gone meanwhile: not attached
            if found >= wanted:
                out.add(idx)
    return out
