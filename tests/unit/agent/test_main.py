"""l2agent's command line: usage errors are one line and exit code 2, like bad values."""

from __future__ import annotations

import pytest

from agent.main import main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--lease-duration=15s"], 'unknown flag --lease-duration="15s"; known flags: --enable-'),
        (["--nope"], "unknown flag --nope; known flags: --enable-l2-announcements, "),
        (["--devices"], "Option '--devices' requires an argument."),
        (["extra"], "Got unexpected extra argument(s) (extra)"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_code_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Regression: click's usage errors were three lines (usage, hint, error).
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("l2agent: ") and says in line


def test_help_still_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "--enable-l2-announcements" in capsys.readouterr().out
