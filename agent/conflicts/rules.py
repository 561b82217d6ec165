"""The conflict detector's rules: which ARP packets mean that another host answers for a VIP this
node announces, when to probe, when to defend, when a conflict is over. Pure: packets, the pairs
announced and the time come in as values, actions go out (agent/conflicts/monitor.py does the
I/O), so every rule is tested with virtual time.

The ideas are IPv4 Address Conflict Detection's (RFC 5227), adapted to an address that moves
between nodes by lease:

- **Evidence.** Any ARP packet, request or reply, whose sender IP is a VIP we announce on that
  interface and whose sender MAC is not the interface's own: a reply to our probe, a gratuitous
  ARP, the other host's own request. A probe from another host (sender IP 0.0.0.0) is not: our
  datapath answers it, which is how that host learns the address is taken.
- **Probe.** An ARP request from our MAC with sender IP 0.0.0.0 and target IP the VIP, broadcast.
  Sender IP 0 makes every receiver leave its ARP cache alone, and a host that owns the address
  answers it (to our MAC). Linux answers it even for a static address that never announces
  itself, which passive listening alone would not see on a switched LAN: its replies to clients
  are unicast to them. We probe when we start announcing a pair, again when the claim grace ends,
  then every ``probe_interval`` (0: passive only, after the first two).
- **Claiming cannot wait.** RFC 5227 listens before using an address; a VIP that fails over must
  answer at once, so we announce and probe together and judge what comes back (below).
- **Defend** with one gratuitous ARP (the takeover's RFC 5227 form), at most once per
  ``defend_interval`` per pair and at most ``max_defences`` times per conflict episode: a host
  that defends its address too (another announcer, an ACD client) would otherwise trade packets
  with us forever. After that we keep answering requests but send nothing more; the Event and the
  condition tell the operator, who must remove one of the two.
- **Over** when the foreign MAC has been silent for ``quiet`` (three probe intervals: three of our
  probes unanswered; with probing off, ``PASSIVE_QUIET``), or when we stop announcing the pair
  (the new holder, if any, judges for itself).

**The other nodes of our cluster are not foreign.** Another node's agent answers for a VIP only
while it holds the lease, and the election keeps two holders apart in time: a planned handover
removes the old holder's map keys before it releases the lease, and a holder that stops renewing
has its datapath fall silent at the renew deadline, before the lease can expire for anyone else.
Two rules cover what is left:

1. While the ``leases`` table names another node as holder of a Service wanting the pair, we are
   the stale side (our view of our own lease lags; the announcer withdraws the pair as soon as it
   catches up), so we judge nothing: a packet from the holder is exactly what we should see.
2. For ``claim_grace`` after we start announcing a pair (or retake it), a foreign MAC is only
   noted, not reported: the previous holder's last replies or gratuitous ARP may still be on the
   wire. It becomes a conflict only if it is heard again after the grace, which the probe sent
   when the grace ends asks for; an old holder, being silent by then, never is.

What these rules cannot tell apart, on purpose: a node of the cluster whose *kernel* answers for
the VIP (kube-proxy's IPVS mode without strict ARP, a VIP configured on an interface) is reported
like any other host, with its MAC: it breaks the VIP the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from common.tables.conflicts import Conflict

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
NO_MAC = "00:00:00:00:00:00"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"

PROBE_INTERVAL = 1.0
"""Seconds between two probes of one (VIP, interface) while we announce it: a silent foreign host
is found within about one interval. Each probe is one 60-byte broadcast frame, so N announced
pairs cost N frames per second on the LAN (every host on it receives them; they create no ARP
cache entries). Configurable (``l2-announcements-conflict-probe-interval``; 0: passive only)."""

CLAIM_GRACE = 1.0
"""Seconds after we start announcing a pair during which a foreign MAC is only noted: the old
holder is silent by design before we can take the lease, so this only covers packets it sent
just before (a reply in flight, the tail of its gratuitous ARP burst)."""

DEFEND_INTERVAL = 10.0
"""At most one defending gratuitous ARP per pair in this many seconds (RFC 5227's DEFEND_INTERVAL)."""

MAX_DEFENCES = 3
"""Defending gratuitous ARPs per conflict episode; after that we stop sending, never trading
packets in a loop with a host that defends too."""

PASSIVE_QUIET = 30.0
"""Without periodic probes, seconds of silence after which a conflict is considered over: a
chatty host (gratuitous ARPs, its own requests) is heard again well within it."""

QUIET_PROBES = 3
"""With periodic probes, a conflict is over after this many probe intervals without a packet from
the foreign MAC: one lost reply does not clear it."""

MAX_FOREIGN = 4
"""Foreign MACs tracked per pair; more are counted (metric) but get no row or Event of their own.
A host on the LAN sending gratuitous ARPs from many made-up MACs must not be able to make the
agent write without bound, nor queue Events in front of lease renewals in the API client."""

ROW_REFRESH = 1.0
"""A conflict's row (last seen, packet count) is rewritten at most this often: a host flooding
gratuitous ARPs costs one write per second, not one per packet."""


@dataclass(frozen=True, slots=True)
class Settings:
    probe_interval: float = PROBE_INTERVAL
    claim_grace: float = CLAIM_GRACE
    defend_interval: float = DEFEND_INTERVAL
    max_defences: int = MAX_DEFENCES
    refresh: float = ROW_REFRESH

    @property
    def quiet(self) -> float:
        """Silence after which a conflict is over."""
        if self.probe_interval > 0:
            return QUIET_PROBES * self.probe_interval
        return PASSIVE_QUIET


# -- packets --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArpPacket:
    op: int
    sha: str  # sender MAC, lower-case colon form
    spa: str  # sender IP
    tha: str
    tpa: str


def mac_text(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip_text(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def parse_arp(frame: bytes) -> ArpPacket | None:
    """An Ethernet/IPv4 ARP frame's fields, or None for anything else (other protocols, other
    hardware, truncated frames)."""
    if len(frame) < 42:
        return None
    ethertype, htype, ptype, hlen, plen, op = struct.unpack_from("!HHHBBH", frame, 12)
    if ethertype != ETH_P_ARP or htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    if op not in (ARPOP_REQUEST, ARPOP_REPLY):
        return None
    return ArpPacket(
        op,
        mac_text(frame[22:28]),
        _ip_text(frame[28:32]),
        mac_text(frame[32:38]),
        _ip_text(frame[38:42]),
    )


def foreign_sender(pkt: ArpPacket, ip: str, our_mac: str) -> str | None:
    """The MAC of another host claiming ``ip``, if ``pkt`` is one; None otherwise."""
    if pkt.spa != ip or not our_mac:
        return None
    if pkt.sha in (our_mac, NO_MAC, BROADCAST_MAC):
        return None
    return pkt.sha


# -- what comes in, what goes out ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pair:
    """A (VIP, interface) this node announces."""

    ip: str
    interface: str
    mac: str  # the interface's MAC
    services: tuple[str, ...] = ()  # "namespace/name"
    held_elsewhere: bool = False  # the leases table names another node for one of the services


@dataclass(frozen=True, slots=True)
class Probe:
    ip: str
    interface: str


@dataclass(frozen=True, slots=True)
class Defend:
    ip: str
    interface: str


@dataclass(frozen=True, slots=True)
class Heard:
    """A conflicting packet from ``mac`` (counted; the row is rewritten at most every refresh)."""

    ip: str
    interface: str
    mac: str


@dataclass(frozen=True, slots=True)
class Clean:
    """The pair has been announced for the claim grace plus the quiet time with no conflict: the
    Services wanting it can say so."""

    pair: Pair


@dataclass(frozen=True, slots=True)
class Raised:
    """A new conflict: write the row, warn on the Service."""

    row: Conflict


@dataclass(frozen=True, slots=True)
class Updated:
    row: Conflict


@dataclass(frozen=True, slots=True)
class Cleared:
    row: Conflict
    why: str  # one line, for the log and the Service


Action = Probe | Defend | Heard | Clean | Raised | Updated | Cleared


@dataclass(slots=True)
class _Foreign:
    row: Conflict
    last_seen: float  # monotonic
    written: float  # monotonic time the row was last handed out
    dirty: bool = False


@dataclass(slots=True)
class _PairState:
    pair: Pair
    since: float  # monotonic: when we started (or restarted) announcing it
    next_probe: float
    grace_probed: bool = False
    noted: dict[str, float] = field(default_factory=dict)  # mac -> first seen (wall)
    foreign: dict[str, _Foreign] = field(default_factory=dict)
    last_defence: float | None = None
    defences: int = 0
    clean_told: bool = False


class Detector:
    """The per-node conflict state. Not thread-safe: one caller at a time."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._pairs: dict[tuple[str, str], _PairState] = {}

    # -- inputs ----------------------------------------------------------------------------------

    def watch(self, pairs: Iterable[Pair], now: float, wall: float) -> list[Action]:
        """The pairs announced now; a new pair is probed at once, a pair no longer announced
        clears its conflicts."""
        out: list[Action] = []
        wanted = {(p.ip, p.interface): p for p in pairs}
        for key in [k for k in self._pairs if k not in wanted]:
            st = self._pairs.pop(key)
            for f in st.foreign.values():
                out.append(Cleared(f.row, "this node no longer announces it there"))
        for key, pair in wanted.items():
            st = self._pairs.setdefault(key, _PairState(pair, since=now, next_probe=now))
            if st.pair.held_elsewhere and not pair.held_elsewhere:
                # Retaken after another node held it: a claim again, with its grace.
                st.since, st.grace_probed, st.next_probe = now, False, now
                st.noted.clear()
                st.clean_told = False
            if pair.services != st.pair.services or pair.mac != st.pair.mac:
                for mac, f in st.foreign.items():
                    f.row = replace(f.row, services=pair.services, our_mac=pair.mac)
                    f.dirty = True
                    if pair.mac == mac:  # our own MAC now: it was never foreign
                        f.last_seen = -float("inf")
            st.pair = pair
        out += self.tick(now, wall)
        return out

    def packet(self, interface: str, pkt: ArpPacket, now: float, wall: float) -> list[Action]:
        """An ARP packet received on ``interface``."""
        st = self._pairs.get((pkt.spa, interface))
        if st is None or st.pair.held_elsewhere:
            return []
        mac = foreign_sender(pkt, st.pair.ip, st.pair.mac)
        if mac is None:
            return []
        s = self.settings
        f = st.foreign.get(mac)
        if f is None:
            if now < st.since + s.claim_grace:
                if mac in st.noted or len(st.noted) < MAX_FOREIGN:
                    st.noted.setdefault(mac, wall)
                return []
            if len(st.foreign) >= MAX_FOREIGN:
                return [Heard(st.pair.ip, interface, mac)]
            first_wall = st.noted.pop(mac, wall)
            row = Conflict(
                ip=st.pair.ip,
                network_interface=interface,
                foreign_mac=mac,
                our_mac=st.pair.mac,
                services=st.pair.services,
                first_seen=first_wall,
                last_seen=wall,
                packets=1,
            )
            f = _Foreign(row, last_seen=now, written=now)
            st.foreign[mac] = f
            st.clean_told = True  # a conflict's clearing tells the Services instead
            defend = self._defend(st, now, wall)
            f.dirty = False  # the Raised row below carries the defence too
            return [Heard(st.pair.ip, interface, mac), Raised(f.row), *defend]
        f.last_seen = now
        f.row = replace(f.row, last_seen=wall, packets=f.row.packets + 1)
        f.dirty = True
        out: list[Action] = [Heard(st.pair.ip, interface, mac)]
        defend = self._defend(st, now, wall)
        if defend or now - f.written >= s.refresh:
            out.append(self._written(f, now))
        return out + defend

    def tick(self, now: float, wall: float) -> list[Action]:
        """Probes due, conflicts gone quiet, rows due a rewrite."""
        s = self.settings
        out: list[Action] = []
        for st in self._pairs.values():
            if st.pair.held_elsewhere:
                continue
            grace_end = st.since + s.claim_grace
            if not st.grace_probed and now >= grace_end:
                st.grace_probed = True
                st.next_probe = min(st.next_probe, now)
            if st.noted and now >= grace_end + s.quiet:
                st.noted.clear()  # noted during the grace and not heard since: a holder's tail
            if now >= st.next_probe:
                out.append(Probe(st.pair.ip, st.pair.interface))
                if not st.grace_probed:
                    st.next_probe = grace_end
                elif s.probe_interval > 0:
                    st.next_probe = now + s.probe_interval
                else:
                    st.next_probe = float("inf")
            for mac, f in list(st.foreign.items()):
                if now - f.last_seen >= s.quiet:
                    del st.foreign[mac]
                    out.append(Cleared(f.row, f"not heard for {s.quiet:g}s"))
                elif f.dirty and now - f.written >= s.refresh:
                    out.append(self._written(f, now))
            if not st.foreign:
                st.defences, st.last_defence = 0, None  # the next conflict is a new episode
                if not st.clean_told and now >= grace_end + s.quiet:
                    st.clean_told = True
                    out.append(Clean(st.pair))
        return out

    # -- outputs ---------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The monotonic time :meth:`tick` next has something to do; None: nothing pending."""
        s = self.settings
        times: list[float] = []
        for st in self._pairs.values():
            if st.pair.held_elsewhere:
                continue
            times.append(st.next_probe)
            if not st.grace_probed:
                times.append(st.since + s.claim_grace)
            if (not st.clean_told and not st.foreign) or st.noted:
                times.append(st.since + s.claim_grace + s.quiet)
            for f in st.foreign.values():
                times.append(f.last_seen + s.quiet)
                if f.dirty:
                    times.append(f.written + s.refresh)
        finite = [t for t in times if t != float("inf")]
        return min(finite) if finite else None

    def conflicts(self) -> list[Conflict]:
        return [f.row for st in self._pairs.values() for f in st.foreign.values()]

    def pairs(self) -> list[Pair]:
        return [st.pair for st in self._pairs.values()]

    def _written(self, f: _Foreign, now: float) -> Updated:
        f.written, f.dirty = now, False
        return Updated(f.row)

    def _defend(self, st: _PairState, now: float, wall: float) -> list[Action]:
        s = self.settings
        if st.defences >= s.max_defences:
            return []
        if st.last_defence is not None and now - st.last_defence < s.defend_interval:
            return []
        st.last_defence = now
        st.defences += 1
        for f in st.foreign.values():
            f.row = replace(f.row, defended_at=wall, defences=st.defences)
            f.dirty = True
        return [Defend(st.pair.ip, st.pair.interface)]


def announced_pairs(
    entries: Iterable[tuple[str, str, tuple[str, ...]]],
    macs: Mapping[str, str],
    holders: Mapping[str, str],
    node: str,
) -> list[Pair]:
    """The pairs to watch: ``entries`` are the l2-announce rows as (IP, interface, services
    "namespace/name"), ``macs`` interface name -> MAC, ``holders`` Service "namespace/name" ->
    the node its Lease names (the ``leases`` table). IPv6 VIPs are left out (no ARP)."""
    out: list[Pair] = []
    for ip, interface, services in entries:
        if ":" in ip or not services:
            continue
        elsewhere = any(holders.get(s, node) not in ("", node) for s in services)
        out.append(Pair(ip, interface, macs.get(interface, ""), services, elsewhere))
    return out
