"""The agent's runtime: what every module of the agent runs on.

    Clock      monotonic time for decisions, wall time for display; tests inject FakeClock
    Health     a typed level (OK / Degraded / Stopped) and a message, one reporter per job
    Job        a background loop, timer or one-shot under a guard: a failure is logged, marks
               the job Degraded and is retried with backoff; never a silent dead thread
    Lifecycle  start hooks in order, stop hooks in reverse; a failed start stops what started
    WorkerPool threads for blocking calls a job makes concurrently (the elector's Lease requests)

Every thread the agent runs is a Job's or a WorkerPool's (this package is the only place that
creates threads), and every Job's health reporter is registered with the agent's
``HealthRegistry``, which the health publisher copies into the ``health`` table that
``l2dbg status`` reads.
"""

from agent.runtime.clock import Clock, FakeClock, RealClock
from agent.runtime.health import Health, HealthRegistry, HealthReporter, Level
from agent.runtime.jobs import Backoff, Job, OneShot, Timer
from agent.runtime.lifecycle import Lifecycle, StartError
from agent.runtime.pool import WorkerPool

__all__ = [
    "Backoff",
    "Clock",
    "FakeClock",
    "Health",
    "HealthRegistry",
    "HealthReporter",
    "Job",
    "Level",
    "Lifecycle",
    "OneShot",
    "RealClock",
    "StartError",
    "Timer",
    "WorkerPool",
]
