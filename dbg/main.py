"""Entry point of the ``l2dbg`` console script.

``main()`` rewrites ``-w``/``--watch`` with an optional value into ``--watch=<interval>`` (click
has no options with optional values), serves ``l2dbg statedb <table>`` through ``dbg.fast``
without loading typer, and hands everything else to the typer app in ``dbg.cli``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from common.durations import is_interval
from dbg.errors import DbgError, report

WATCH_FLAGS = ("-w", "--watch")
DEFAULT_WATCH = "1s"  # the interval of a bare -w


def preprocess(args: Sequence[str]) -> list[str]:
    """``-w`` / ``--watch`` alone mean ``--watch=1s``; ``-w 2s``, ``-w2s``, ``--watch 2s`` and
    ``--watch=2s`` mean ``--watch=2s``. A following word that is not a duration stays an
    argument. Nothing after ``--`` is touched."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        if arg in WATCH_FLAGS:
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is not None and is_interval(nxt):
                out.append(f"--watch={nxt}")
                i += 2
                continue
            out.append(f"--watch={DEFAULT_WATCH}")
        elif arg.startswith("-w") and not arg.startswith("--"):
            out.append(f"--watch={arg[2:].removeprefix('=')}")
        else:
            out.append(arg)
        i += 1
    return out


def _fast(args: list[str]) -> bool:
    """Serve ``l2dbg statedb <table>`` without typer; False if the arguments are not that."""
    from dbg import fast

    if not args or not args[0].startswith(("statedb", "--state-dir")):
        return False
    from common.tables import CATALOGUE

    req = fast.parse(args, frozenset(CATALOGUE))
    if req is None:
        return False
    from dbg import statedb_ops

    state_dir = statedb_ops.resolve_state_dir(req.state_dir)
    statedb_ops.show_table(state_dir, req.table, req.output, sys.stdout)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    args = preprocess(sys.argv[1:] if argv is None else argv)
    try:
        try:
            if _fast(args):
                return
        except DbgError as e:
            report(e)
            raise SystemExit(1) from None
        from dbg.cli import app

        app(args=args, prog_name="l2dbg")
    except BrokenPipeError:
        # `l2dbg ... | head`: the reader went away; do not print a traceback on exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
