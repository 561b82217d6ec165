"""l2dbg bpf l2-responder list reads the real pinned map (and never compiles anything)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bpf.datapath import Datapath


def test_list_shows_ip_interface_ifindex_and_counter(bpf_root: str) -> None:
    dp = Datapath(bpf_root)
    dp.start()
    try:
        dp.responder.add_if_missing("198.51.100.10", 1)  # ifindex 1 is lo in every namespace
        dp.responder.add_if_missing("198.51.100.9", 1)
        dp.responder.add_if_missing("2001:db8::10", 1)
        l2dbg = str(Path(sys.executable).parent / "l2dbg")
        out = subprocess.run(
            [l2dbg, "bpf", "l2-responder", "list", "--bpf-root", bpf_root],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert out == (
            "# IP            Interface   Ifindex   ResponsesSent\n"
            "198.51.100.9    lo          1         0\n"
            "198.51.100.10   lo          1         0\n"
            "2001:db8::10    lo          1         0\n"
        )
        as_json = subprocess.run(
            [l2dbg, "bpf", "l2-responder", "list", "-o", "json", "--bpf-root", bpf_root],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert json.loads(as_json)[0] == {
            "IP": "198.51.100.9", "Interface": "lo", "Ifindex": 1, "ResponsesSent": 0,
        }  # fmt: skip
        # Reading loads no compiler: the command must not import bcc.
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys; from dbg.bpf_cmd import rows; from pathlib import Path; "
             f"rows(Path({bpf_root!r})); print('bcc' in sys.modules)"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert probe == "False"
    finally:
        dp.shutdown(detach=True)
