"""The election of one Lease, as a pure state machine.

Inputs: whether we want the lease (``set_wanted``), what we observe of it (``observe``: from the
lease watch and from our own responses), the outcome of our requests (``complete``), and time
(``step``). Outputs: at most one request at a time (``step`` returns it) and leadership changes
(``drain_events``). Nothing here sleeps, talks to the network or reads a clock, so every rule can be
tested with virtual time, and many electors can be simulated against one fake API server.

The rules are client-go's (jittered retries, release on cancel), with these changes:
- expiry is judged on the local monotonic clock from when a change of the record was last
  observed, never from the record's renewTime;
- a leader stops leading once ``renew_deadline`` has passed since the *sending* of its last
  successful renew, whether or not a request is still hanging, so it is silent before any other
  node can see the lease expire (those count from when they observed that renew);
- a released lease (empty holder) is taken at once, not after its 1 s duration;
- followers do not poll: they wait for the observed record to expire, and only ask the server
  (GET) when their view is known to be stale (a 409).

Lease economy mode (``step(..., economy=view)``, docs/leases.md): the holder writes a Service's
lease only when its holder changes (acquire, release) and never renews it; its node heartbeat
(another election, renewed every retry period) vouches for all of them. So:
- a leader leads while its own heartbeat is led (``view.own_alive()``) and stops with it; it
  acquires nothing while its heartbeat is not led;
- a follower takes a lease over once the lease's own record has not changed for its duration
  (a fresh acquisition counts like a renewal) AND its holder's heartbeat is gone: none at all
  (an agent that renews its leases itself), or released. A heartbeat merely expired in this
  node's view is not enough, since this node's watch may be behind: the election reports the
  holder in ``blocked_on`` and the driver first marks that heartbeat released with its
  resourceVersion as precondition (heartbeat.py, ``Fencer``), which fails if it was renewed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from agent.leases.record import LeaseRecord, micro_time
from common.tables.node_liveness import Liveness

JITTER_FACTOR = 1.2  # client-go's: retries wait retry_period * (1 + rand * 1.2)

Kind = Literal["get", "create", "update"]
Purpose = Literal["refresh", "acquire", "renew", "release"]
ErrorKind = Literal["", "conflict", "notfound", "forbidden", "other"]


@dataclass(frozen=True, slots=True)
class Timings:
    lease_duration: float
    renew_deadline: float
    retry_period: float

    def __post_init__(self) -> None:
        # The config's lease-timing clamps guarantee these; an elector must never run without.
        if not (self.lease_duration > self.renew_deadline > self.retry_period * JITTER_FACTOR > 0):
            raise ValueError(
                "lease timings need lease duration > renew deadline > retry period * 1.2 > 0"
            )


@dataclass(frozen=True, slots=True)
class Request:
    kind: Kind
    purpose: Purpose
    record: LeaseRecord | None  # what to create or update (None for get)
    timeout: float  # seconds; the call must give up by then
    sent_at: float  # monotonic time the request was issued


@dataclass(frozen=True, slots=True)
class Outcome:
    record: LeaseRecord | None = None  # the server's record after success; None: not found
    error: ErrorKind = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.error == ""


@dataclass(frozen=True, slots=True)
class Event:
    leading: bool
    reason: str
    # On taking over another node's lease: seconds from when it became available to this node
    # (release observed, or observed expiry) to leading. None for other events.
    takeover_seconds: float | None = None


class EconomyView(Protocol):
    """What an election in lease economy mode asks its node (at the time of the step)."""

    def own_alive(self) -> bool:
        """Whether this node's heartbeat is led (renewed within the renew deadline)."""
        ...

    def holder_state(self, node: str) -> Liveness | None:
        """``node``'s heartbeat as this node sees it; None when it has none."""
        ...


def _rv(record: LeaseRecord | None) -> int | None:
    if record is None:
        return None
    try:
        return int(record.resource_version)
    except ValueError:
        return None


class LeaseElection:
    def __init__(
        self,
        name: str,
        identity: str,
        timings: Timings,
        rand: Callable[[], float],
    ) -> None:
        if not identity:
            raise ValueError("lock identity is empty")
        self.name = name
        self.identity = identity
        self.timings = timings
        self._rand = rand
        self.wanted = False
        self.leading = False
        self.known = False  # whether `observed` reflects the server (else GET first)
        self.observed: LeaseRecord | None = None
        self.observed_at = -math.inf
        self.in_flight: Request | None = None
        self.last_renew = -math.inf  # when the last successful acquire/renew went out
        self.last_attempt = -math.inf  # when the last acquire/renew went out, successful or not
        self.not_before = -math.inf  # no request before this (backoff after errors)
        self.last_error = ""
        self._available_since: float | None = None
        self._events: list[Event] = []
        # Economy mode: the holder whose expired heartbeat keeps us from taking the lease (the
        # driver fences it, then steps us again); "" when nothing is blocked.
        self.blocked_on = ""
        # A node heartbeat in economy mode: deleted under us (after another node fenced it) it
        # must not be quietly created again while we still lead, which would vouch anew for
        # Service leases that node may already have taken over.
        self.stop_on_delete = False
        # Economy mode: when this node takes over a lease whose holder's heartbeat is gone. All
        # of a dead node's leases free up at the same moment for every follower; each waits a
        # random part of a retry period, so most see another's takeover (watch) before writing,
        # instead of every follower writing every lease and all but one getting a 409.
        self._takeover_at: float | None = None

    # -- inputs -------------------------------------------------------------------------------

    def set_wanted(self, wanted: bool) -> None:
        self.wanted = wanted
        if wanted:
            self.not_before = -math.inf

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """What the server has (from the watch or a response); None when there is no lease."""
        seen, have = _rv(record), _rv(self.observed)
        if seen is not None and have is not None and seen < have:
            return  # an older event than what our own response already showed us
        if record is None:
            if self.observed is not None:
                self.observed_at = now
            self.observed = None
            if self.stop_on_delete:
                self._stop("lease deleted")
        else:
            if not record.same_record(self.observed):
                self.observed_at = now
                self._takeover_at = None
                if record.holder not in ("", self.identity):
                    self._available_since = None  # someone holds it again
                    # A follower makes no requests to clear an old error (a 403 fixed since):
                    # a fresh record from the watch shows the lease is in good hands.
                    self.last_error = ""
            self.observed = record
            if self.leading and record.holder != self.identity:
                self._stop(f"lease taken by {record.holder or 'nobody (released)'}")
        self.known = True

    def complete(
        self, request: Request, outcome: Outcome, now: float, sent_at: float | None = None
    ) -> None:
        """The outcome of the request ``step`` returned. ``sent_at``: when the request actually
        went out, if later than when ``step`` issued it (it waited in the client-side rate
        limiter). The renew deadline counts from then: still no later than the request reached
        the server, so still before any follower can see the lease expire; counting from the
        issue instead would make every answer "too late" once the limiter queues for longer than
        the renew deadline, and a throttled node would never lead again (each late answer
        queueing another request)."""
        self.in_flight = None
        sent = request.sent_at if sent_at is None else max(request.sent_at, sent_at)
        if request.purpose in ("acquire", "renew"):
            self.last_attempt = sent
        if outcome.ok:
            self.last_error = ""
            self.observe(outcome.record, now)
            if request.purpose in ("acquire", "renew") and outcome.record is not None:
                self.last_renew = sent
                # The renew deadline counts from the sending, so an answer that came too late
                # does not make us leader (the next step takes the lease again, at once).
                in_time = now < self.last_renew + self.timings.renew_deadline
                if self.wanted and not self.leading and in_time:
                    self.leading = True
                    since, self._available_since = self._available_since, None
                    took = None if since is None else max(0.0, now - since)
                    self._events.append(Event(True, "acquired", took))
            return
        self.last_error = outcome.message or outcome.error
        if outcome.error == "conflict":
            self.known = False  # someone else wrote: ask the server before deciding anything
        elif outcome.error == "notfound":
            self.observe(None, now)
        elif not (request.purpose == "renew" and self.leading):
            self.not_before = now + self._backoff()
        # A leader retries a failed renew one retry period after the last one went out, without
        # jitter, as client-go's renew loop does: a jittered backoff (up to 2.2 retry periods)
        # after one refused renew (a 429 from a throttling apiserver) would often pass the renew
        # deadline, and the lease would be dropped for a single error.

    # -- time ---------------------------------------------------------------------------------

    def step(self, now: float, wall: float, economy: EconomyView | None = None) -> Request | None:
        """Apply the rules at ``now``; returns the request to send, if any. ``economy``: the
        node's view in lease economy mode (None: the lease is renewed by its holder)."""
        t = self.timings
        self.blocked_on = ""
        if economy is None:
            if self.leading and now >= self.last_renew + t.renew_deadline:
                self._stop("renew deadline passed")
        elif self.leading and not economy.own_alive():
            self._stop("node heartbeat not renewed")
        if self.in_flight is not None or now < self.not_before:
            return None
        # The backoff is over: forgotten, or next_deadline() would keep returning a time in the
        # past and the driver would step this election again and again (a busy loop).
        self.not_before = -math.inf
        if not self.wanted:
            if self.leading:
                self._stop("no longer selected")
            if self.observed is not None and self.observed.holder == self.identity:
                # A release refused with a conflict (our own renew that timed out was committed
                # after all) asks the server first: the watch may have nothing more to say.
                if not self.known:
                    return self._send("get", "refresh", None, now)
                return self._send("update", "release", self._released(wall), now)
            return None
        if not self.known:
            return self._send("get", "refresh", None, now)
        if self.leading:
            if self.observed is None and (
                economy is not None or now >= self.last_attempt + t.retry_period
            ):
                return self._send("create", "renew", self._fresh(wall, 0), now)
            if economy is None and now >= self.last_attempt + t.retry_period:
                return self._send("update", "renew", self._renewed(wall), now)
            return None
        if economy is not None and not economy.own_alive():
            return None  # a lease acquired now would be vouched for by nothing
        obs = self.observed
        if obs is None:
            return self._send("create", "acquire", self._fresh(wall, 0), now)
        if obs.holder == self.identity:
            # Ours from before a restart: take it back at once, keeping its history.
            return self._send("update", "acquire", self._renewed(wall), now)
        if obs.holder != "" and now < self._expiry():
            return None
        if obs.holder != "" and economy is not None:
            state = economy.holder_state(obs.holder)
            if state is Liveness.ALIVE:
                self._takeover_at = None
                return None  # the driver steps us again when that heartbeat changes
            if state is Liveness.EXPIRED:
                self._takeover_at = None
                self.blocked_on = obs.holder
                return None
            if self._takeover_at is None:
                self._takeover_at = now + self._rand() * t.retry_period
            if now < self._takeover_at:
                return None
        if self._available_since is None:
            self._available_since = self.observed_at if obs.holder == "" else self._expiry()
            if economy is not None:
                self._available_since = max(self._available_since, now)  # no later bound known
        return self._send("update", "acquire", self._fresh(wall, obs.transitions + 1), now)

    def next_deadline(self, economy: bool = False, now: float = -math.inf) -> float:
        """When ``step`` must run next if nothing else happens (inf: only on new input). In
        economy mode a leader has no deadline of its own, nor a follower whose lease's record has
        expired: the driver steps them when a heartbeat (ours, the holder's) changes."""
        t = self.timings
        times = [math.inf]
        if self.leading and not economy:
            times.append(self.last_renew + t.renew_deadline)
        if self.in_flight is None:
            if self.not_before > -math.inf:
                times.append(self.not_before)
            if self.wanted and self.leading and not economy:
                times.append(self.last_attempt + t.retry_period)
            takeover = self._takeover_at
            if economy and self.wanted and not self.leading and takeover is not None:
                if takeover > now:  # once due, the driver's step either takes or forgets it
                    times.append(takeover)
            elif (
                self.wanted
                and self.known
                and self.observed is not None
                and self.observed.holder not in ("", self.identity)
                and not (economy and self._expiry() <= now)
            ):
                times.append(self._expiry())
        return min(times)

    def drain_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    @property
    def settled(self) -> bool:
        """Whether this election has resolved what the node had before it started: a lease the
        server still shows us holding is either taken back (leading) or failed to be (an error).
        Until then the agent must not prune what it announced before a restart."""
        if not self.wanted:
            return True
        if not self.known:
            return bool(self.last_error)
        return self.leading or not self.holds_lease or bool(self.last_error)

    @property
    def holds_lease(self) -> bool:
        """Whether the server's record (as we know it) names us."""
        return self.observed is not None and self.observed.holder == self.identity

    # -- helpers ------------------------------------------------------------------------------

    def _stop(self, reason: str) -> None:
        if self.leading:
            self.leading = False
            self._events.append(Event(False, reason))

    def _expiry(self) -> float:
        assert self.observed is not None
        return self.observed_at + max(0, self.observed.duration_seconds)

    def _backoff(self) -> float:
        return self.timings.retry_period * (1 + self._rand() * JITTER_FACTOR)

    def _send(
        self, kind: Kind, purpose: Purpose, record: LeaseRecord | None, now: float
    ) -> Request:
        t = self.timings
        timeout = t.retry_period
        if self.leading:
            # Never wait on a renew past the moment we would have to stop leading anyway.
            timeout = max(0.05, min(timeout, self.last_renew + t.renew_deadline - now))
        req = Request(kind, purpose, record, timeout, now)
        self.in_flight = req
        return req

    def _duration_seconds(self) -> int:
        return max(1, math.floor(self.timings.lease_duration))

    def _fresh(self, wall: float, transitions: int) -> LeaseRecord:
        stamp = micro_time(wall)
        rv = self.observed.resource_version if self.observed else ""
        return LeaseRecord(self.identity, self._duration_seconds(), stamp, stamp, transitions, rv)

    def _renewed(self, wall: float) -> LeaseRecord:
        obs = self.observed
        assert obs is not None
        return LeaseRecord(
            self.identity,
            self._duration_seconds(),
            obs.acquire_time or micro_time(wall),
            micro_time(wall),
            obs.transitions,
            obs.resource_version,
        )

    def _released(self, wall: float) -> LeaseRecord:
        obs = self.observed
        assert obs is not None
        stamp = micro_time(wall)
        return LeaseRecord("", 1, stamp, stamp, obs.transitions, obs.resource_version)
