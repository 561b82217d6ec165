"""Solicited-node multicast membership for the IPv6 VIPs this node answers for.

A solicitation for a VIP is sent to the VIP's solicited-node group (ff02::1:ffXX:XXXX), whose
Ethernet address is 33:33:ff:XX:XX:XX. A NIC that filters multicast by address drops it unless the
group is programmed into its filter, and an MLD-snooping switch does not forward it to a port
that has not reported the group. The kernel does both when a socket joins the group on the
interface (IPV6_JOIN_GROUP): it adds the address to the device's filter and sends an MLD report,
and sends a Done and removes it when the last member leaves (or the socket is closed).

So while the node holds an IPv6 VIP on an interface it keeps that VIP's group joined there, with
sockets of its own. Several VIPs can share a group (the same low 24 bits): a group is left only
when the last of them goes. A socket can hold only so many memberships (its option memory), so
new sockets are opened as the old ones fill. Everything is in the network namespace the sockets
are opened in.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import threading

from bpf.ndp import solicited_node

log = logging.getLogger(__name__)

_FULL = (errno.ENOBUFS, errno.ENOMEM)  # the socket's option memory is used up


class GroupError(OSError):
    """The kernel refused to join a group; the message names the group and the interface."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


def _mreq(group: bytes, ifindex: int) -> bytes:
    return group + struct.pack("@I", ifindex)  # struct ipv6_mreq


def _ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"interface {ifindex}"


class SolicitedNodeGroups:
    """Joins and leaves the solicited-node groups of IPv6 VIPs, per interface. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[tuple[bytes, int], set[str]] = {}  # (group, ifindex) -> VIPs
        self._socket_of: dict[tuple[bytes, int], socket.socket] = {}
        self._sockets: list[socket.socket] = []

    def join(self, vip: str, ifindex: int) -> bool:
        """Hold ``vip``'s group on ``ifindex``; True when the group was joined now (the first VIP
        of it there). Idempotent. Raises :class:`GroupError` when the kernel refuses."""
        group = solicited_node(ipaddress.IPv6Address(vip).packed)
        with self._lock:
            holders = self._holders.setdefault((group, ifindex), set())
            if holders:
                holders.add(vip)
                return False
            try:
                self._socket_of[(group, ifindex)] = self._join(group, ifindex)
            except BaseException:
                del self._holders[(group, ifindex)]
                raise
            holders.add(vip)
            return True

    def _join(self, group: bytes, ifindex: int) -> socket.socket:
        for sock in reversed(self._sockets):  # the newest has room, if any has
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, _mreq(group, ifindex))
                return sock
            except OSError as e:
                if e.errno not in _FULL:
                    raise self._error(e, group, ifindex) from None
                break
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError as e:
            raise self._error(e, group, ifindex) from None
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, _mreq(group, ifindex))
        except OSError as e:
            sock.close()
            raise self._error(e, group, ifindex) from None
        self._sockets.append(sock)
        return sock

    @staticmethod
    def _error(e: OSError, group: bytes, ifindex: int) -> GroupError:
        return GroupError(
            e.errno,
            f"join {ipaddress.IPv6Address(group)} on {_ifname(ifindex)}: {e.strerror or e}",
        )

    def leave(self, vip: str, ifindex: int) -> bool:
        """Stop holding ``vip``'s group on ``ifindex``; True when the group was left now (its last
        VIP there). A group the kernel already dropped (the interface went away) is not an
        error."""
        group = solicited_node(ipaddress.IPv6Address(vip).packed)
        with self._lock:
            holders = self._holders.get((group, ifindex))
            if holders is None or vip not in holders:
                return False
            holders.discard(vip)
            if holders:
                return False
            del self._holders[(group, ifindex)]
            sock = self._socket_of.pop((group, ifindex))
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, _mreq(group, ifindex))
            except OSError as e:
                if e.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.EINVAL):
                    log.warning(
                        "leave %s on %s: %s", ipaddress.IPv6Address(group), _ifname(ifindex), e
                    )
            return True

    def held(self) -> dict[tuple[str, int], set[str]]:
        """(group, ifindex) -> the VIPs holding it, for status and tests."""
        with self._lock:
            return {
                (str(ipaddress.IPv6Address(g)), i): set(v) for (g, i), v in self._holders.items()
            }

    def close(self) -> None:
        """Leave every group (closing a socket leaves its groups)."""
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            self._holders.clear()
            self._socket_of.clear()
