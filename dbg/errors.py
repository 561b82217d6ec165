"""The one kind of error l2dbg reports: a single line on stderr, exit code 1, no traceback."""

from __future__ import annotations

import sys

PROG = "l2dbg"


class DbgError(Exception):
    """Something the operator can act on; ``str(e)`` is the whole message, without the prefix."""


def report(err: DbgError) -> None:
    sys.stderr.write(f"{PROG}: {err}\n")
    sys.stderr.flush()
