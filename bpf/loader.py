"""A standalone datapath process driven by line commands: for privileged tests, benches and the lab.

It does what the agent's datapath module does, in the network namespace it is started in
(``nsenter --net=/run/netns/<ns> python -m bpf.loader ...``; ``ip netns exec`` would hide bpffs
by remounting /sys). After start it prints ``ready {json}`` and then answers each stdin line with
``ok [json]`` or ``err <message>``:

    attach IFNAME|IFINDEX       detach IFNAME|IFINDEX
    add IP IFINDEX              del IP IFINDEX          get IP IFINDEX       items
    garp IP IFINDEX             stop-stamp              start-stamp          clear-stamp
    max-age NS                  exit (keep attached)    disable (detach + unpin ours)

A pin at one of our paths that is not ours stops it before anything is loaded: ``error: ...`` on
stderr, exit code 1.

End of input behaves like ``exit``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

from bpf.datapath import DEFAULT_MAX_LIVENESS_NS, Datapath
from bpf.garp import GarpSender
from bpf.maps import DEFAULT_BPF_ROOT, PinConflictError


def _ifindex(arg: str) -> int:
    return int(arg) if arg.isdigit() else socket.if_nametoindex(arg)


def _handle(dp: Datapath, garp: GarpSender, words: list[str]) -> object:
    cmd, args = words[0], words[1:]
    if cmd == "attach":
        dp.attach(_ifindex(args[0]))
        return None
    if cmd == "detach":
        return dp.detach(_ifindex(args[0]))
    if cmd == "add":
        return dp.responder.add_if_missing(args[0], int(args[1]))
    if cmd == "del":
        return dp.responder.delete(args[0], int(args[1]))
    if cmd == "get":
        return dp.responder.get(args[0], int(args[1]))
    if cmd == "items":
        return [[e.ip, e.ifindex, e.responses_sent] for e in dp.responder.items()]
    if cmd == "garp":
        garp.announce(args[0], int(args[1]))
        return None
    if cmd == "stop-stamp":
        dp.stamper.stop()
        return None
    if cmd == "start-stamp":
        dp.start_stamping()
        return None
    if cmd == "clear-stamp":
        dp.stamper.clear()
        return None
    if cmd == "max-age":
        dp.set_max_liveness(int(args[0]))
        return None
    raise ValueError(f"unknown command {cmd!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bpf.loader",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bpf-root", default=DEFAULT_BPF_ROOT)
    p.add_argument("--max-liveness-ns", type=int, default=DEFAULT_MAX_LIVENESS_NS)
    p.add_argument("--stamp-interval", type=float, default=1.0, help="seconds")
    p.add_argument("--garp-count", type=int, default=3)
    p.add_argument("--garp-interval", type=float, default=0.5, help="seconds")
    p.add_argument("--attach", action="append", default=[], help="interface name or index")
    p.add_argument(
        "--defer-stamp",
        action="store_true",
        help="do not stamp liveness until the start-stamp command (as the agent does)",
    )
    a = p.parse_args(argv)

    dp = Datapath(a.bpf_root, a.max_liveness_ns, stamp_interval_s=a.stamp_interval)
    try:
        dp.start()
    except PinConflictError as e:  # a pin of someone else's at our path: one line, no traceback
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    previous_age = dp.previous_stamp_age_ns()
    if not a.defer_stamp:
        dp.start_stamping()
    garp = GarpSender(a.garp_count, a.garp_interval)
    garp.start()  # the later packets of each burst come from its own thread
    for iface in a.attach:
        dp.attach(_ifindex(iface))
    ready = {
        "compile_seconds": dp.compile_seconds,
        "attached": dp.attached(),
        "stamp_age_ns": previous_age,
    }
    print("ready " + json.dumps(ready), flush=True)
    detach = False
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] in ("exit", "disable"):
            detach = words[0] == "disable"
            break
        try:
            result = _handle(dp, garp, words)
        except Exception as e:
            print(f"err {e}", flush=True)
        else:
            print("ok " + json.dumps(result), flush=True)
    garp.stop()
    dp.shutdown(detach=detach)
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
