"""L2 pod announcements: one gratuitous ARP burst per pod on this node when it gets an address,
on the configured interface, so the LAN's neighbour caches learn the pod's address as soon as it
exists (the pods of a flat L2 network are reachable without waiting for an ARP request). For an
IPv6 address the burst is of unsolicited Neighbour Advertisements (the sender picks the frame by
the address): they update an entry a neighbour already has, and create none."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable

from agent.changes_loop import ChangesLoop
from agent.runtime import Clock
from common.tables.pods import PODS, Pod
from statedb import Change, Database

log = logging.getLogger("l2announcer.agent")


class PodAnnouncer(ChangesLoop[Pod]):
    def __init__(
        self,
        db: Database,
        interface: str,
        announce: Callable[[str, int], None],
        *,
        clock: Clock | None = None,
    ) -> None:
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError as e:
            raise RuntimeError(
                f'gratuitous arp sender interface "{interface}" not found: {e.strerror}'
            ) from None
        super().__init__(db, PODS, "pod-announcer", clock=clock)
        self.interface = interface
        self._announce = announce
        # Per pod name: the uid seen last and the addresses already announced for it.
        self._seen: dict[tuple[str, str], tuple[str, set[str]]] = {}
        self.sent = 0

    def handle(self, changes: list[Change[Pod]], first: bool) -> None:
        for ch in changes:
            key = (ch.row.namespace, ch.row.name)
            if ch.deleted:
                self._seen.pop(key, None)
                continue
            if ch.row.host_network:
                continue
            uid, known = self._seen.get(key, (ch.row.uid, set()))
            if uid != ch.row.uid:
                # Re-created under the same name between two reads: the delete was coalesced
                # away, but the new pod's (possibly same) address needs its own burst.
                known = set()
            self._seen[key] = (ch.row.uid, known)
            for ip in ch.row.ips:
                if ip in known:
                    continue
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    continue  # not an address: nothing to announce
                known.add(ip)
                try:
                    self._announce(ip, self.ifindex)
                    self.sent += 1
                except Exception as e:
                    log.warning("Failed to send gratuitous arp: %s %s: %s", key, ip, e)
