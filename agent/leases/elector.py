"""The elector: every lease this node campaigns for, driven by one scheduler job.

Each lease is a ``LeaseElection`` (state.py). The scheduler steps only the elections that are due
(a heap of deadlines) or that got new input (``want``, ``observe``, a request's outcome), hands
their requests to a small thread pool, and reports leadership changes through ``on_change`` from
its own thread, outside the lock, in order. API calls never run on the scheduler thread, so a
hanging request cannot delay a leader's deadline: the scheduler withdraws leadership on time and
the hung call is ignored when it finally returns.

Leadership changes are reported before the requests of the same step are sent, so the "stopped
leading" callback has withdrawn the announcements before a release reaches the API server.

``stop()`` withdraws every leadership and releases every lease we hold (empty holder, 1 s), giving
up after ``release_timeout``; followers that watch the lease take it over as soon as they see it.

Losses, acquisitions, failed renewals and the time requests waited client-side go to a
``ChurnMonitor`` (churn.py): ``churn_problem()`` says when leases keep flapping, and why.

Its health ("elector") is computed when read: OK with how many leases it leads, Degraded while
leases churn or a campaign's requests fail (the first error shown).

The node's heartbeat (``heartbeat``: its Lease ``l2announcer-node-<node>``, see heartbeat.py) is
one more election here, wanted from ``start()`` to ``stop()``, renewed every retry period like a
held Service lease and released with them. It is kept out of what the elector reports about
Service leases (``leading``, ``campaigns``, ``on_change``, churn): ``heartbeat_alive()`` and
``on_heartbeat`` tell it, and its failures show in the health row.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import threading
from collections.abc import Callable
from concurrent.futures import Future

from agent.leases.api import (
    Campaign,
    CampaignState,
    Conflict,
    Forbidden,
    LeaseAPI,
    LeaseAPIError,
    NotFound,
    SendTime,
)
from agent.leases.churn import ChurnMonitor
from agent.leases.election import LeaseElection, Outcome, Request, Timings
from agent.leases.heartbeat import Fencer, NodeLivenessView, placement_heartbeat_timings
from agent.leases.record import LeaseRecord
from agent.runtime import Backoff, Clock, Health, HealthReporter, Job, RealClock, WorkerPool
from common.leases import heartbeat_name, heartbeat_node
from common.tables.node_liveness import Liveness

log = logging.getLogger("l2announcer.leases")

OnChange = Callable[[str, bool, str], None]  # (lease name, leading, reason)

RETRY_AFTER_FAILURE = Backoff(first=0.1, cap=1.0)
"""A scheduler step that raised (a bug) is retried soon: while it does not run, no leader's
renew deadline is enforced, so a short pause, never the default backoff of up to 30 s."""


class Elector:
    def __init__(
        self,
        api: LeaseAPI,
        identity: str,
        timings: Timings,
        on_change: OnChange,
        clock: Clock | None = None,
        workers: int = 8,
        rand: Callable[[], float] = random.random,
        namespace: str = "",
        on_takeover: Callable[[str, float], None] | None = None,
        client_qps: float | None = None,
        heartbeat: str = "",
        on_heartbeat: Callable[[bool, str], None] | None = None,
        economy: bool = False,
    ) -> None:
        if economy and not heartbeat:
            raise ValueError("lease economy mode needs the node's heartbeat lease")
        self._api = api
        self.heartbeat = heartbeat
        self._on_heartbeat = on_heartbeat
        self.economy = economy
        # Economy mode: the other nodes' heartbeats as this elector sees them (the watch and its
        # own requests), their states at the last step, and the fences of expired ones.
        self._nodes = NodeLivenessView()
        self._node_states: dict[str, Liveness | None] = {}
        self._fencer = Fencer(timings, rand)
        self._heartbeat_led = False  # as of the last step (economy mode)
        self._namespace = namespace
        self._on_takeover = on_takeover
        self.identity = identity
        self.timings = timings
        self._on_change = on_change
        self._clock = clock or RealClock()
        self._rand = rand
        self._cond = threading.Condition()
        self._elections: dict[str, LeaseElection] = {}
        self._dirty: set[str] = set()
        self._heap: list[tuple[float, str]] = []
        self._pool = WorkerPool("lease-api", workers)
        # Heartbeats (ours, and fences of others') have workers of their own: queued behind
        # hundreds of acquisitions (a start, a failover) a renewal would miss its deadline, and
        # in economy mode that drops every Service the node holds at once.
        self._beat_pool = WorkerPool("lease-heartbeat", 2)
        self.name = "elector"
        self.health = HealthReporter(self.name, probe=self._health)
        # The scheduler ends by itself once stop() has released what it holds (see _run).
        self._job = Job(
            self.name, self._run, wake=self._wake, health=self.health, backoff=RETRY_AFTER_FAILURE
        )
        self._stopping = False
        self._release_deadline = math.inf
        self._in_flight: set[Future[None]] = set()
        self._last_logged: dict[str, str] = {}
        self.churn = ChurnMonitor(timings.renew_deadline, client_qps)  # under self._cond
        add_listener = getattr(self._clock, "on_advance", None)
        if add_listener is not None:
            add_listener(self._wake)

    # -- inputs -------------------------------------------------------------------------------

    def want(self, name: str, wanted: bool) -> None:
        """Campaign for ``name`` (True) or give it up and release it if held (False)."""
        with self._cond:
            e = self._elections.get(name)
            if e is None:
                if not wanted:
                    return
                timings = self.timings
                if name == self.heartbeat and not self.economy:
                    timings = placement_heartbeat_timings(timings)
                e = LeaseElection(name, self.identity, timings, self._rand)
                e.stop_on_delete = self.economy and name == self.heartbeat
                self._elections[name] = e
            e.set_wanted(wanted and not self._stopping)
            self._touch(name)

    def observe(self, name: str, record: LeaseRecord | None) -> None:
        """What the lease watch says of ``name`` (None: the lease does not exist)."""
        with self._cond:
            node = heartbeat_node(name) if self.economy and name != self.heartbeat else None
            if node is not None:
                self._observe_node(node, record)
                return
            e = self._elections.get(name)
            if e is not None:
                e.observe(record, self._clock.monotonic())
                self._touch(name)

    def is_leading(self, name: str) -> bool:
        with self._cond:
            e = self._elections.get(name)
            return e is not None and e.leading

    def leading(self) -> set[str]:
        with self._cond:
            return {n for n, e in self._services() if e.leading}

    def heartbeat_fresh(self, window: float) -> bool:
        """Whether this node's heartbeat is led and its last successful renewal went out less
        than ``window`` seconds ago: the datapath's liveness gate in economy mode (see
        heartbeat.stamp_window)."""
        with self._cond:
            e = self._elections.get(self.heartbeat) if self.heartbeat else None
            return e is not None and e.leading and self._clock.monotonic() < e.last_renew + window

    def heartbeat_alive(self) -> bool:
        """Whether this node's heartbeat is renewed: its last successful renewal went out within
        the renew deadline (False without a heartbeat)."""
        with self._cond:
            e = self._elections.get(self.heartbeat) if self.heartbeat else None
            return e is not None and e.leading

    def _services(self) -> list[tuple[str, LeaseElection]]:
        """The Service leases' elections (every election but the heartbeat's); under the lock."""
        return [(n, e) for n, e in self._elections.items() if n != self.heartbeat]

    def settled(self) -> bool:
        """Every campaign has resolved what the node held before it started (see
        ``LeaseElection.settled``)."""
        with self._cond:
            return all(e.settled for _, e in self._services())

    def campaigns(self) -> dict[str, Campaign]:
        """Each lease we campaign for and how it stands: leading, following <holder>, or why."""
        with self._cond:
            out = {}
            for n, e in self._services():
                if e.leading:
                    out[n] = Campaign(CampaignState.LEADING)
                elif e.last_error:
                    out[n] = Campaign(CampaignState.FAILING, e.last_error)
                elif e.observed is not None and e.observed.holder:
                    out[n] = Campaign(CampaignState.FOLLOWING, e.observed.holder)
                else:
                    out[n] = Campaign(CampaignState.CAMPAIGNING)
            return out

    def churn_problem(self) -> str:
        """Why this node's leases keep flapping ("" when they do not), see churn.py."""
        with self._cond:
            leading = {n for n, e in self._services() if e.leading}
            return self.churn.problem(self._clock.monotonic(), leading)

    def _health(self) -> Health:
        with self._cond:
            services = self._services()
            leading = {n for n, e in services if e.leading}
            # As campaigns() shows them: a leading campaign shows no error.
            errors = sorted({e.last_error for _, e in services if e.last_error and not e.leading})
            total = len(services)
            churn = self.churn.problem(self._clock.monotonic(), leading)
            hb = self._elections.get(self.heartbeat) if self.heartbeat else None
            hb_error = hb.last_error if hb is not None and not hb.leading else ""
        summary = f"leading {len(leading)} of {total} lease(s)"
        beat = f"heartbeat {self.heartbeat} not renewed: {hb_error}" if hb_error else ""
        problems = [p for p in (beat, churn, *(f"error: {x}" for x in errors[:1])) if p]
        if problems:
            return Health.degraded(f"{summary}; {'; '.join(problems)}")
        return Health.ok(summary)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.heartbeat:
            self.want(self.heartbeat, True)
        self._job.start()

    def stop(self, release_timeout: float = 1.0) -> None:
        """Stop leading everywhere, release held leases (bounded by ``release_timeout``)."""
        with self._cond:
            if not self._job.running or self._stopping:
                return
            # The deadline first: _submit reads both without the lock.
            self._release_deadline = self._clock.monotonic() + release_timeout
            self._stopping = True
            for name, e in self._elections.items():
                e.set_wanted(False)
                self._dirty.add(name)
            self._cond.notify_all()
        self._job.stop(timeout=release_timeout + 1.0)
        self._pool.shutdown()
        self._beat_pool.shutdown()

    # -- the scheduler ------------------------------------------------------------------------

    # -- economy mode: the other nodes' heartbeats (under the lock) ----------------------------

    def own_alive(self) -> bool:
        """EconomyView: whether this node's heartbeat is led (called under the lock)."""
        e = self._elections.get(self.heartbeat)
        return e is not None and e.leading

    def holder_state(self, node: str) -> Liveness | None:
        """EconomyView: ``node``'s heartbeat now, as this elector sees it."""
        return self._nodes.state(node, self._clock.monotonic())

    def _observe_node(self, node: str, record: LeaseRecord | None) -> None:
        self._nodes.observe(node, record, self._clock.monotonic(), self._clock.now())
        self._check_node(node)
        expiry = self._nodes.expiry(node)
        if expiry > -math.inf:
            heapq.heappush(self._heap, (expiry, heartbeat_name(node)))

    def _check_node(self, node: str, force: bool = False) -> None:
        """Step the leases waiting on ``node``'s heartbeat if its state moved since last seen
        (or ``force``: a fence may be retried)."""
        state = self._nodes.state(node, self._clock.monotonic())
        if not force and node in self._node_states and self._node_states[node] == state:
            return
        self._node_states[node] = state
        for n, e in self._services():
            if not e.leading and e.observed is not None and e.observed.holder == node:
                self._dirty.add(n)
        self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _touch(self, name: str) -> None:
        self._dirty.add(name)
        self._cond.notify_all()

    def _run(self, _stopping: threading.Event) -> None:
        # Ends by itself, not on the job's stop event: stop() first sets _stopping and withdraws
        # every campaign, and the loop returns once the releases are done or out of time.
        with self._cond:
            # Run again after a failed step: what that step had taken off the queue is due.
            self._dirty.update(self._elections)
        while True:
            changes: list[tuple[str, bool, str]] = []
            takeovers: list[tuple[str, float]] = []
            requests: list[tuple[str, Request]] = []
            try:
                with self._cond:
                    finished = self._step(changes, takeovers, requests)
            finally:
                # Even after a step that raised half-way: what it decided is reported and sent,
                # or an election would wait forever for the answer to a request never sent.
                self._deliver(changes, takeovers, requests)
            self._job.succeeded()  # clears a failed step's Degraded, if any
            if finished:
                return
            with self._cond:
                if self._dirty:
                    continue
                # Wake for the next deadline and, when stopping, the release deadline; a None
                # (a fake clock) means "until woken", so it never wins over a real timeout.
                deadlines = [self._heap[0][0]] if self._heap else []
                if self._stopping:
                    deadlines.append(self._release_deadline)
                at = self._clock.monotonic()
                waits = [self._clock.real_timeout(d - at) for d in deadlines]
                self._cond.wait(min((w for w in waits if w is not None), default=None))

    def _step(
        self,
        changes: list[tuple[str, bool, str]],
        takeovers: list[tuple[str, float]],
        requests: list[tuple[str, Request]],
    ) -> bool:
        """Step the elections that are due or got input (under the lock), collecting what to
        report and send; True once stopping and every lease is released (or out of time)."""
        now = self._clock.monotonic()
        due = set(self._dirty)
        self._dirty.clear()
        while self._heap and self._heap[0][0] <= now:
            due.add(heapq.heappop(self._heap)[1])
        wall = self._clock.now()
        blocked: set[str] = set()
        # The heartbeat first: in economy mode the Service leases' steps ask whether it is led,
        # and all of them are stepped when that changes (the leaders stop with it, the campaigns
        # wait for it). Another node's heartbeat due (its expiry, a fence's backoff) steps the
        # leases waiting on it if its state moved.
        queue = sorted(due, key=lambda n: n != self.heartbeat)
        while queue:
            name = queue.pop(0)
            node = heartbeat_node(name) if self.economy and name != self.heartbeat else None
            if node is not None:
                # Due at its expiry (a no-op when renewed since), or when a fence may be retried.
                self._check_node(node, force=self._fencer.retry_at(node) <= now)
                queue.extend(n for n in self._dirty if n not in due)
                due |= self._dirty
                self._dirty.clear()
                continue
            e = self._elections.get(name)
            if e is None:
                continue  # forgotten since it was scheduled
            req = e.step(now, wall, self if self.economy and name != self.heartbeat else None)
            if name == self.heartbeat and self.economy and e.leading != self._heartbeat_led:
                self._heartbeat_led = e.leading
                more = [n for n, _ in self._services() if n not in due]
                queue.extend(more)
                due.update(more)
            if e.blocked_on:
                blocked.add(e.blocked_on)
            if req is not None:
                requests.append((name, req))
            for ev in e.drain_events():
                changes.append((name, ev.leading, ev.reason))
                if name == self.heartbeat:
                    continue  # not a Service lease: no churn, no takeover time
                if ev.leading:
                    self.churn.acquired(name, now)
                elif not self._stopping:
                    self.churn.lost(name, ev.reason, now)
                if ev.takeover_seconds is not None:
                    takeovers.append((name, ev.takeover_seconds))
            deadline = e.next_deadline(self.economy and name != self.heartbeat, now)
            if deadline < math.inf:
                heapq.heappush(self._heap, (deadline, name))
            idle = not (e.wanted or e.leading or e.in_flight or e.holds_lease)
            if idle and not self._stopping:
                del self._elections[name]  # nothing left to do for it
        for node in sorted(blocked):
            fence = self._fencer.request(node, self._nodes.record(node), now, wall)
            if fence is not None:
                requests.append((heartbeat_name(node), fence))
            elif node not in self._fencer.in_flight:
                retry = self._fencer.retry_at(node)
                if retry < math.inf:
                    heapq.heappush(self._heap, (retry, heartbeat_name(node)))
        return self._stopping and (
            not any(e.in_flight or e.holds_lease for e in self._elections.values())
            or now >= self._release_deadline
        )

    def _deliver(
        self,
        changes: list[tuple[str, bool, str]],
        takeovers: list[tuple[str, float]],
        requests: list[tuple[str, Request]],
    ) -> None:
        # Callbacks first: a node that stops leading withdraws its announcements before the
        # release that lets another node take over is even sent.
        try:
            self._report(changes)
            self._report_takeovers(takeovers)
        finally:
            for name, req in requests:
                self._submit(name, req)

    def _report(self, changes: list[tuple[str, bool, str]]) -> None:
        for name, leading, reason in changes:
            if name == self.heartbeat:
                self._report_heartbeat(leading, reason)
                continue
            log.info(
                "%s lease %s: %s", "Started leading" if leading else "Stopped leading", name, reason
            )
            try:
                self._on_change(name, leading, reason)
            except Exception:
                log.exception("leadership callback failed for lease %s", name)

    def _report_heartbeat(self, alive: bool, reason: str) -> None:
        if alive:
            log.info("Node heartbeat %s renewed", self.heartbeat)
        else:
            log.warning("Node heartbeat %s not renewed: %s", self.heartbeat, reason)
        if self._on_heartbeat is not None:
            try:
                self._on_heartbeat(alive, reason)
            except Exception:
                log.exception("heartbeat callback failed")

    def _report_takeovers(self, takeovers: list[tuple[str, float]]) -> None:
        if self._on_takeover is None:
            return
        for name, seconds in takeovers:
            try:
                self._on_takeover(name, seconds)
            except Exception:  # a metric must not keep this step's requests from being sent
                log.exception("takeover callback failed for lease %s", name)

    def _submit(self, name: str, req: Request) -> None:
        timeout = req.timeout
        if req.purpose == "release" and self._stopping:
            # On the way out a release may use what is left of the release budget: a write can
            # take longer than one retry period on a busy apiserver, and a release that gives up
            # leaves the lease to expire instead of being taken over at once.
            timeout = max(timeout, self._release_deadline - self._clock.monotonic())
        pool = self._beat_pool if heartbeat_node(name) is not None else self._pool
        fut = pool.submit(self._call, name, req, timeout)
        self._in_flight.add(fut)
        fut.add_done_callback(self._in_flight.discard)

    def _call(self, name: str, req: Request, timeout: float) -> None:
        # When the request actually went out, if the API can tell: it can wait long in a
        # client-side rate limiter first.
        sent_time = SendTime()
        outcome = self._execute(name, req, timeout, sent_time)
        sent = sent_time.at
        with self._cond:
            now = self._clock.monotonic()
            if sent is not None:
                self.churn.waited(sent - req.sent_at, now)
            if req.purpose == "renew" and not outcome.ok and name != self.heartbeat:
                self.churn.renew_failed(name, outcome.message or outcome.error, now)
            if outcome.error and outcome.error != "conflict":
                msg = self._failure_message(name, req, outcome)
                if self._last_logged.get(name) != msg:  # one line per distinct failure
                    log.error("%s", msg)
                    self._last_logged[name] = msg
            elif outcome.ok:
                self._last_logged.pop(name, None)
            node = heartbeat_node(name)
            if node is not None and self._fencer.in_flight.get(node) is req:
                self._fence_done(node, req, outcome)
                return
            e = self._elections.get(name)
            if e is not None and e.in_flight is req:
                e.complete(req, outcome, self._clock.monotonic(), sent_at=sent)
                self._touch(name)

    def _fence_done(self, node: str, req: Request, outcome: Outcome) -> None:
        """A fence's outcome (under the lock): what it shows of the heartbeat goes to the view,
        and the leases waiting on it are stepped again."""
        now = self._clock.monotonic()
        if self._fencer.complete(node, req, outcome, now):
            if req.kind == "update" and outcome.ok:
                log.warning(
                    "Node heartbeat %s expired: marked released, its leases may be taken over",
                    heartbeat_name(node),
                )
            self._observe_node(node, outcome.record)
        self._check_node(node, force=True)

    def _failure_message(self, name: str, req: Request, outcome: Outcome) -> str:
        """The wording of client-go's leader election, kept word for word: operators' alerts and
        runbooks written for it grep these lines."""
        if req.kind == "get" or (outcome.error == "forbidden" and req.kind != "update"):
            lock = f"{self._namespace}/{name}" if self._namespace else name
            return f"error retrieving resource lock {lock}: {outcome.message}"
        if req.kind == "create":
            return f"error initially creating leader election record: {outcome.message}"
        if req.purpose == "release":
            return f"Failed to release lock: {outcome.message}"
        return f"Failed to update lock: {outcome.message}"

    def _execute(self, name: str, req: Request, timeout: float, sent: SendTime) -> Outcome:
        try:
            if req.kind == "get":
                return Outcome(self._api.get(name, timeout, sent=sent))
            assert req.record is not None
            if req.kind == "create":
                return Outcome(self._api.create(name, req.record, timeout, sent=sent))
            return Outcome(self._api.update(name, req.record, timeout, sent=sent))
        except Conflict as e:
            return Outcome(error="conflict", message=str(e))
        except NotFound as e:
            return Outcome(error="notfound", message=str(e))
        except Forbidden as e:
            return Outcome(error="forbidden", message=str(e))
        except LeaseAPIError as e:
            return Outcome(error="other", message=str(e))
        except Exception as e:  # a transport error must never kill the elector
            return Outcome(error="other", message=f"{type(e).__name__}: {e}")
