"""Log lines in the reference's layout (logrus text), which the seed's runbook greps:

    time="2024-06-25T12:01:43Z" level=error msg="error retrieving resource lock ..." subsys=klog

Messages from the Kubernetes client side (leases, throttling) carry ``subsys=klog`` as in the
reference, where client-go logged them; the rest carry their module's name. Structured fields
(``log.warning("...", extra=fields(policy="policy1"))``) follow the message sorted by key with
``subsys`` among them, quoted only when needed, as logrus prints them:

    level=warning msg="Error processing policy event" error="..." policy=policy1 subsys=announcer
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
_SUBSYS = {"l2announcer.leases": "klog", "l2announcer.k8s": "klog"}


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_BARE = re.compile(r"[A-Za-z0-9\-._/@^+]+")  # what logrus leaves unquoted


def _value(v: Any) -> str:
    s = str(v)
    return s if _BARE.fullmatch(s) else _quote(s)


def fields(**kv: Any) -> dict[str, Any]:
    """``extra=`` for a log call: structured fields printed after the message."""
    return {"fields": kv}


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        name = record.name
        subsys = _SUBSYS.get(name) or name.removeprefix("l2announcer.")
        level = _LEVELS.get(record.levelno, record.levelname.lower())
        extra: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        extra["subsys"] = subsys
        tail = " ".join(f"{k}={_value(extra[k])}" for k in sorted(extra))
        return f"time={_quote(stamp)} level={level} msg={_quote(msg)} {tail}"


def setup(debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("urllib3", "kubernetes", "pyroute2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
