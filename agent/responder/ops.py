"""The l2-responder's operations on the BPF map, for the generic reconciler.

- ``update``: resolve the interface through the devices table (not netlink: the table is the one
  view of devices the whole agent shares), attach this agent's program to it once (replacing a
  previous agent's, which may be an older version, atomically), add the key only if
  it is missing (so its ``responses_sent`` counter survives reconciliation and restarts) and send
  a gratuitous ARP burst only for a key that was missing (so a restarted agent does not announce
  again). A failed GARP never blocks the key, because the VIP must be answered even when the
  announcement could not go out: the key stays, the row shows ``garp <ip>@<ifindex>: ...`` and
  the retry sends the GARP again. An IPv6 row is the same with unsolicited Neighbour
  Advertisements for the burst, and first joins the VIP's solicited-node multicast group on the
  interface (on every update, so a restarted agent joins again for the keys it adopted), so
  that NICs filtering multicast and MLD-snooping switches deliver the solicitations.
- ``delete``: remove the key, cancel a burst still going, leave the group, detach from an
  interface left with no key.
- ``prune``: remove every key no row wants (stale keys of a previous agent), detach idle
  interfaces.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Iterable
from typing import Protocol

from bpf.garp import GarpError
from common.tables.devices import DEVICES, DEVICES_BY_NAME
from common.tables.l2_announce import L2AnnounceEntry
from statedb import Database, ReadTxn

log = logging.getLogger("l2announcer.l2-responder")


class ResponderKeys(Protocol):
    def add_if_missing(self, ip: str, ifindex: int) -> bool: ...
    def delete(self, ip: str, ifindex: int) -> bool: ...
    def keys(self) -> list[tuple[str, int]]: ...


class Attacher(Protocol):
    def attach(self, ifindex: int, mac: bytes | None = None) -> None: ...
    def detach(self, ifindex: int) -> bool: ...
    def attached(self) -> list[int]: ...


class GratuitousArp(Protocol):
    def announce(self, vip: str, ifindex: int) -> None: ...
    def cancel(self, vip: str, ifindex: int) -> None: ...


class MulticastGroups(Protocol):
    def join(self, vip: str, ifindex: int) -> bool: ...
    def leave(self, vip: str, ifindex: int) -> bool: ...


def _v6(ip: str) -> bool:
    return ipaddress.ip_address(ip).version == 6


class ResponderOps:
    def __init__(
        self,
        db: Database,
        responder: ResponderKeys,
        attacher: Attacher,
        garp: GratuitousArp,
        groups: MulticastGroups | None = None,
    ) -> None:
        """``groups``: the solicited-node memberships of IPv6 VIPs; None joins none (for
        processes that only exercise the map, such as benchmarks)."""
        self.db = db
        self.map = responder
        self.attacher = attacher
        self.garp = garp
        self.groups = groups
        self._lock = threading.Lock()
        # Where this agent attached its own program. A previous agent's filter (adopted at
        # start; maybe an older program version) is not in it, so the first update on that
        # interface swaps this agent's program in (atomically: no unanswered request).
        self._attached: set[int] = set()
        self._adopted: set[int] | None = None  # carrying a previous agent's filter at start
        self._garp_due: set[tuple[str, int]] = set()  # keys whose GARP failed: send on retry
        self._ifindex_of: dict[tuple[str, str], int] = {}  # (ip, interface) -> ifindex used

    def _device(self, name: str, r: ReadTxn | None = None) -> tuple[int, bytes | None]:
        """The ifindex and MAC of ``name``, read in ``r`` if given (else in a read of its own)."""
        if r is None:
            with self.db.read_txn() as own:
                return self._device(name, own)
        found = r.list(DEVICES_BY_NAME, name)
        if not found:
            raise LookupError(f"link index: no device named {name!r}")
        d = found[0]
        mac = bytes.fromhex(d.hw_addr.replace(":", "")) if d.hw_addr else None
        return d.ifindex, mac

    def _adopted_filters(self) -> set[int]:
        # Read once, when first needed: what a previous agent left attached at our start.
        if self._adopted is None:
            self._adopted = set(self.attacher.attached())
        return self._adopted

    def _ensure_attached(self, ifindex: int, mac: bytes | None) -> None:
        adopted = self._adopted_filters()
        if ifindex not in self._attached:
            self.attacher.attach(ifindex, mac)
            self._attached.add(ifindex)
            adopted.discard(ifindex)

    def _detach_idle(self) -> None:
        adopted = self._adopted_filters()
        used = {idx for _ip, idx in self.map.keys()}  # noqa: SIM118 (a BPF map, not a dict)
        for ifindex in sorted((self._attached | adopted) - used):
            self.attacher.detach(ifindex)
            self._attached.discard(ifindex)
            adopted.discard(ifindex)

    def forget_interfaces(self, names: set[str]) -> None:
        """An interface changed (new ifindex or MAC): forget what we cached about it, so the next
        update attaches to it afresh and announces its keys again."""
        with self._lock:
            for key in [k for k in self._ifindex_of if k[1] in names]:
                ifindex = self._ifindex_of.pop(key)
                self._attached.discard(ifindex)
                self._garp_due.add((key[0], ifindex))
                if self.groups is not None and _v6(key[0]):
                    self.groups.leave(key[0], ifindex)  # joined again on the new ifindex

    # -- Operations ---------------------------------------------------------------------------

    def update(self, row: L2AnnounceEntry) -> None:
        with self._lock:
            ifindex, mac = self._device(row.network_interface)
            self._ensure_attached(ifindex, mac)
            try:
                added = self.map.add_if_missing(row.ip, ifindex)
            except OSError as e:
                raise RuntimeError(f"create {row.ip}@{ifindex}: {e}") from None
            self._ifindex_of[(row.ip, row.network_interface)] = ifindex
            if self.groups is not None and _v6(row.ip):
                try:
                    self.groups.join(row.ip, ifindex)
                except OSError as e:  # answered anyway where nothing filters: the key stays
                    if added:
                        self._garp_due.add((row.ip, ifindex))  # announce on the retry
                    raise RuntimeError(str(e)) from None
            if not added and (row.ip, ifindex) not in self._garp_due:
                return
            try:
                self.garp.announce(row.ip, ifindex)
            except GarpError as e:
                self._garp_due.add((row.ip, ifindex))
                raise RuntimeError(f"garp {row.ip}@{ifindex}: {e}") from None
            self._garp_due.discard((row.ip, ifindex))

    def delete(self, row: L2AnnounceEntry) -> None:
        with self._lock:
            ifindex = self._ifindex_of.pop((row.ip, row.network_interface), None)
            if ifindex is None:
                try:
                    ifindex, _mac = self._device(row.network_interface)
                except LookupError:
                    # The device is gone and what we knew of it was forgotten (it changed just
                    # before, see forget_interfaces): this IP's keys on interfaces that no longer
                    # exist are this row's. Left to the next prune they would be answered for
                    # minutes by a stale key.
                    with self.db.read_txn() as r:
                        present = {d.ifindex for d in r.all(DEVICES)}
                    gone = [k for k in self.map.keys() if k[0] == row.ip and k[1] not in present]  # noqa: SIM118
                    for _ip, stale in gone:
                        self._delete_key(row.ip, stale)
                    self._detach_idle()
                    return
            self._delete_key(row.ip, ifindex)
            self._detach_idle()

    def _delete_key(self, ip: str, ifindex: int) -> None:
        self.garp.cancel(ip, ifindex)
        self._garp_due.discard((ip, ifindex))
        if self.groups is not None and _v6(ip):
            self.groups.leave(ip, ifindex)
        try:
            self.map.delete(ip, ifindex)
        except OSError as e:
            raise RuntimeError(f"delete {ip}@{ifindex}: {e}") from None

    def prune(self, rows: Iterable[L2AnnounceEntry]) -> None:
        with self._lock:
            wanted: set[tuple[str, int]] = set()
            with self.db.read_txn() as r:  # one read for every row, not one per row
                for row in rows:
                    try:
                        wanted.add((row.ip, self._device(row.network_interface, r)[0]))
                    except LookupError:
                        continue
            removed = []
            for ip, ifindex in self.map.keys():  # noqa: SIM118 (a BPF map, not a dict)
                if (ip, ifindex) not in wanted:
                    self.garp.cancel(ip, ifindex)
                    self.map.delete(ip, ifindex)
                    if self.groups is not None and _v6(ip):
                        self.groups.leave(ip, ifindex)
                    removed.append(f"{ip}@{ifindex}")
            if removed:
                log.info("pruned stale responder keys: %s", ", ".join(removed))
            self._detach_idle()
