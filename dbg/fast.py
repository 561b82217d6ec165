"""The start-up fast path for the command operators run most: ``l2dbg statedb <table>``.

typer 0.29 coerces every option through a pydantic TypeAdapter, and importing pydantic alone
costs more than half of l2dbg's 150 ms start-up budget. So ``main()`` first tries this tiny
parser, which understands exactly ``[--state-dir D] statedb [--state-dir D] <table>
[-o FORMAT] [--state-dir D]`` and nothing else. Anything it does not fully understand (help,
--watch, a typo, ``dump``, ``query``) returns None and goes to typer, which gives the usual help
and errors. Both paths call the same ``statedb_ops.show_table``; a test runs every accepted form
through both and compares the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dbg.output import Output

_OUTPUTS = {o.value: o for o in Output}


@dataclass(frozen=True, slots=True)
class Request:
    table: str
    output: Output
    state_dir: Path | None  # None: not given, use $L2ANNOUNCER_STATE_DIR or the default


def parse(args: list[str], tables: set[str] | frozenset[str]) -> Request | None:
    positional: list[str] = []
    state_dirs: dict[int, str] = {}  # level (root 0, statedb 1, table 2) -> --state-dir
    output = Output.TABLE
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name == "--state-dir" or (name == "--output" and len(positional) == 2):
            if not eq:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
        elif arg == "-o" and len(positional) == 2:
            if i + 1 >= len(args):
                return None
            i += 1
            name, value = "--output", args[i]
        elif arg.startswith("-o") and len(arg) > 2 and len(positional) == 2:
            name, value = "--output", arg[2:]
        elif arg.startswith("-"):
            return None
        else:
            positional.append(arg)
            if len(positional) > 2:
                return None
            i += 1
            continue
        if name == "--state-dir":
            if not value:
                return None
            state_dirs[len(positional)] = value
        else:
            if value not in _OUTPUTS:
                return None
            output = _OUTPUTS[value]
        i += 1
    if len(positional) != 2 or positional[0] != "statedb" or positional[1] not in tables:
        return None
    given = [state_dirs[lvl] for lvl in (2, 1, 0) if lvl in state_dirs]
    return Request(positional[1], output, Path(given[0]) if given else None)
