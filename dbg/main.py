"""Entry point of the ``l2dbg`` console script: runs the command line of ``dbg.cli``.

Nothing else parses the arguments; the commands' modules are imported only when used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    from common.cli import run
    from dbg.cli import PROG, command

    try:
        run(command(), PROG, sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        # `l2dbg ... | head`: the reader went away; do not print a traceback on exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
