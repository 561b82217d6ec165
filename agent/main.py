"""``l2agent``: the node agent's command line.

Every configuration key is a flag (``--enable-l2-announcements=true``, ``--devices "eth0 eth1"``);
a boolean flag alone means true, as with Cilium's agent flags. Bad configuration is one line on
stderr and exit code 2. SIGTERM and SIGINT stop the agent in order (entries withdrawn, leases
released) within about 2 s.

``--health-probe`` checks a running agent from outside, by the rules of its ``/readyz`` and
``/healthz`` (``agent/health_rules.py``; the DaemonSet's probes ask the agent itself), reading
the health table of the state database instead of asking the agent: it needs no port, and
works on an agent too wedged to answer. Readiness (plain ``--health-probe``): exit 0 when no
module is Degraded or still Starting. Liveness (``--health-probe --liveness``): exit 0 whenever
the agent published its heartbeat within max(10 s, 3 publish intervals), whatever its modules'
levels, so an API outage never restarts every agent. Exit 1 with one reason line per failure on
stderr, 2 when there is no agent database at all.

``l2agent cleanup`` removes what an uninstall leaves on this node (tc filters, BPF pins and state
files that are l2announcer's, nothing else; ``agent/cleanup.py``), one line per thing removed;
``l2agent cleanup --daemonset l2announcer --leases`` is the cluster part (the chart's pre-delete
hook): the DaemonSet deleted and waited for, so each agent cleans its node on its way out, then
every Lease of ours deleted once unused. Both are idempotent and exit 0 when nothing was left.
"""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, Optional

import typer

from agent.config import KEYS, ConfigError, resolve
from common.cli import command_of
from common.durations import parse_duration

_BOOL_FLAGS = {f"--{k.name}" for k in KEYS if k.kind == "bool"}


def normalize_argv(args: Sequence[str]) -> list[str]:
    """``--flag`` alone means ``--flag=true`` for boolean keys (pflag's behaviour)."""
    out = []
    for a in args:
        out.append(f"{a}=true" if a in _BOOL_FLAGS else a)
    return out


def _run(**kwargs: Any) -> None:
    health_probe = kwargs.pop("health_probe")
    liveness = kwargs.pop("liveness")
    no_datapath = kwargs.pop("no_datapath")
    flags = {name.replace("_", "-"): value for name, value in kwargs.items() if value is not None}
    try:
        resolved = resolve(flags)
    except ConfigError as e:
        typer.echo(f"l2agent: {e}", err=True)
        raise typer.Exit(2) from None
    if health_probe:
        raise typer.Exit(_probe(resolved.config.state_dir, liveness))

    from agent import logfmt
    from agent.agent import Agent

    logfmt.setup()
    import logging

    log = logging.getLogger("l2announcer.agent")
    for warning in resolved.warnings:  # the clamp warnings: once per agent, not per Service
        log.warning("%s", warning)
    done = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent: Agent | None = None
    try:
        agent = Agent(resolved.config, resolved.sources, datapath=not no_datapath)
        agent.start()
    except Exception as e:
        log.error("start-up failed: %s", e)
        typer.echo(f"l2agent: {e}", err=True)  # also plainly, for `kubectl logs` at a glance
        if agent is not None:
            agent.stop()
        raise typer.Exit(1) from None
    done.wait()
    agent.stop()


def _probe(state_dir: str, liveness: bool) -> int:
    import time
    from pathlib import Path

    from agent.health_rules import liveness_failure, readiness_failures
    from agent.runtime import Health, Level
    from common.tables.health import HEALTH, HEARTBEAT
    from statedb import ReadOnlyDatabase, StateDBError

    try:
        with ReadOnlyDatabase.open(Path(state_dir) / "statedb.sqlite") as ro, ro.snapshot() as s:
            rows = s.rows(HEALTH)
    except StateDBError as e:
        typer.echo(f"l2agent: {e}", err=True)
        return 2
    beat = next((h for h in rows if h.module == HEARTBEAT), None)
    dead = liveness_failure(time.time() - beat.updated if beat is not None else None)
    if dead is not None:
        typer.echo(f"l2agent: {dead}", err=True)
        return 1
    if liveness:
        return 0
    levels = {level.value: level for level in Level}
    failing = readiness_failures(
        {
            h.module: Health(levels.get(h.level, Level.DEGRADED), h.message)
            for h in rows
            if h.module != HEARTBEAT
        }
    )
    for line in failing:
        typer.echo(line, err=True)
    return 1 if failing else 0


def _flag(name: str, help: str, hidden: bool = False) -> inspect.Parameter:
    """A boolean option of l2agent's own (not a configuration key)."""
    option = typer.Option(False, "--" + name.replace("_", "-"), help=help, hidden=hidden)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=option)


def _key_params() -> list[inspect.Parameter]:
    params = []
    for k in KEYS:
        default = k.default if k.default else '""'
        params.append(
            inspect.Parameter(
                k.name.replace("-", "_"),
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Optional[str],  # noqa: UP045 (typer reads the annotation at runtime)
                default=typer.Option(
                    None,
                    f"--{k.name}",
                    help=f"{k.help} [default: {default}]",
                    show_default=False,
                    metavar=k.kind.upper(),
                ),
            )
        )
    return params


def _command() -> Any:
    params = _key_params()
    params.append(
        _flag(
            "health_probe",
            "Check the running agent's readiness from its state database (the rules of its "
            "/readyz) and exit.",
        )
    )
    params.append(
        _flag(
            "liveness",
            "With --health-probe: only check that the agent is alive, its heartbeat (the rules "
            "of its /healthz).",
        )
    )
    params.append(
        _flag(
            "no_datapath",
            "Run without the BPF datapath (tests of the control plane only).",
            hidden=True,
        )
    )

    def run(**kwargs: Any) -> None:
        _run(**kwargs)

    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__doc__ = (
        "The l2announcer node agent: answers ARP for Service IPs selected by "
        "CiliumL2AnnouncementPolicies, one node per Service, elected with Leases. "
        "Every flag can also be set as L2ANNOUNCER_<KEY> or a file in --config-dir."
    )
    return run


def _cleanup(**kwargs: Any) -> int:
    leases = kwargs.pop("leases")
    daemonset = kwargs.pop("daemonset") or ""
    wait = kwargs.pop("wait") or "0s"
    flags = {name.replace("_", "-"): value for name, value in kwargs.items() if value is not None}
    try:
        config = resolve(flags).config
        wait_s = parse_duration(wait)
    except (ConfigError, ValueError) as e:
        typer.echo(f"l2agent cleanup: {e}", err=True)
        return 2
    if leases or daemonset:
        return _clean_cluster(config, daemonset, leases, wait_s)
    from agent.cleanup import agent_alive, clean_node

    running = agent_alive(config.state_dir, config.bpf_root)
    if running is not None:
        typer.echo(f"l2agent cleanup: {running}", err=True)
        return 1
    removed, left = clean_node(config.bpf_root, config.state_dir)
    for line in removed:
        typer.echo(f"removed {line}")
    for line in left:
        typer.echo(line)
    if not removed and not left:
        typer.echo("nothing to remove")
    return 0


def _clean_cluster(config: Any, daemonset: str, leases: bool, wait: float) -> int:
    from agent.cleanup import clean_cluster
    from agent.k8s.client import make_api_client

    try:
        api_client = make_api_client(
            config.kubeconfig, config.effective_qps, config.effective_burst
        )
        return clean_cluster(
            api_client,
            config.k8s_namespace,
            daemonset=daemonset,
            leases=leases,
            wait=wait,
            say=typer.echo,
        )
    except Exception as e:  # no kubeconfig, API errors: one line, not a traceback
        typer.echo(f"l2agent cleanup: {_one_line(e)}", err=True)
        return 1


def _one_line(e: Exception) -> str:
    status = getattr(e, "status", None)
    if status:
        return f"{status} {getattr(e, 'reason', '')}".strip()
    return " ".join(str(e).split()) or type(e).__name__


def _cleanup_command() -> Any:
    params = _key_params()
    params.append(
        _flag(
            "leases",
            "Cluster part: delete every cilium-l2announce-* Lease in k8s-namespace that nobody "
            "holds or whose holder stopped renewing it; with --wait, until none is left.",
        )
    )
    params.append(
        inspect.Parameter(
            "daemonset",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[str],  # noqa: UP045 (typer reads the annotation at runtime)
            default=typer.Option(
                None,
                "--daemonset",
                help="Cluster part: first delete this DaemonSet of k8s-namespace and wait for its "
                "pods to stop (each agent cleans its node on the way out).",
                metavar="NAME",
            ),
        )
    )
    params.append(
        inspect.Parameter(
            "wait",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Optional[str],  # noqa: UP045
            default=typer.Option(
                None,
                "--wait",
                help="How long the cluster part may wait (e.g. 2m) [default: 0s].",
                metavar="DURATION",
            ),
        )
    )

    def cleanup(**kwargs: Any) -> int:
        return _cleanup(**kwargs)

    cleanup.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    cleanup.__doc__ = (
        "Remove what an uninstall leaves on this node: the agent's tc filters, BPF pins and state "
        "files (only l2announcer's). With --leases or --daemonset, the cluster part instead."
    )
    return cleanup


def main(argv: Sequence[str] | None = None) -> None:
    # Plain click help: the rich panels truncate the long, Cilium-given flag names.
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    args = normalize_argv(sys.argv[1:] if argv is None else argv)
    # `cleanup` is dispatched by hand: a typer group would make every agent flag need a command
    # name in front of it.
    prog = "l2agent"
    if args[:1] == ["cleanup"]:
        app.command()(_cleanup_command())
        args, prog = args[1:], "l2agent cleanup"
    else:
        app.command()(_command())
    # Not click's standalone mode: its usage errors are several lines (usage, hint, error), and
    # a bad command line must be one line naming what is wrong and what is allowed, the line a
    # crash-looping pod's log shows.
    try:
        # lean: the ~40 flags are converted without pydantic, which would add ~60 ms to every start.
        code = command_of(app).main(args=args, prog_name=prog, standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:
        # click's UsageError family (exit code 2); typer vendors its own click, so match the
        # shape rather than a class.
        if getattr(e, "exit_code", None) != 2 or not hasattr(e, "format_message"):
            raise
        typer.echo(f"{prog}: {_usage_error(e, args)}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(e: Any, args: Sequence[str]) -> str:
    option = getattr(e, "option_name", None)
    if type(e).__name__ == "NoSuchOption" and option:
        given = next((a for a in args if a.split("=", 1)[0] == option), option)
        name, eq, value = given.partition("=")
        shown = f'{name}="{value}"' if eq else name
        known = ", ".join(f"--{k.name}" for k in KEYS)
        return f"unknown flag {shown}; known flags: {known} (see l2agent --help)"
    return " ".join(str(e.format_message()).split())


if __name__ == "__main__":
    main()
