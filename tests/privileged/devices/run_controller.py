"""Run the devices controller in this process's network namespace until SIGTERM.

The privileged tests start it with ``ip netns exec <ns> python run_controller.py ...``: a thread
cannot safely switch namespaces, so the controller gets a process of its own inside the
namespace and writes a state database file that the test reads from outside.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from agent.devices.controller import DevicesController
from agent.devices.options import DevicesOptions, devices_option_from_string
from agent.devices.pyroute2_source import Pyroute2Source
from common.tables.devices import DEVICES
from statedb import Database


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--devices", default="")
    p.add_argument("--force-device-detection", action="store_true")
    p.add_argument("--rcvbuf", type=int, default=4 << 20)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    options = DevicesOptions(
        devices=devices_option_from_string(args.devices),
        force_device_detection=args.force_device_detection,
    )
    rcvbuf = args.rcvbuf
    with Database.open(args.db, [DEVICES]) as db:
        ctl = DevicesController(db, options, source_factory=lambda: Pyroute2Source(rcvbuf))
        ctl.start()
        print("started", flush=True)
        done.wait()
        ctl.stop()
        print("stopped", ctl.health.current(), flush=True)


if __name__ == "__main__":
    main()
