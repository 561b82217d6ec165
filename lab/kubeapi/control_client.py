"""HTTP client for the lab's control surface (control.py), for ``l2lab api ...`` and tests.

Talks to a separately running server over HTTPS, trusting only the lab CA, authenticated with an
admin (``system:masters``) token. Errors come back as :class:`ControlError` carrying the Status
the server answered, so a CLI can print the server's own message.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.kubeapi.control import JSON, PREFIX, ControlError


class ControlClient:
    """Calls the control surface of a running server (for ``l2lab api ...`` and tests)."""

    def __init__(self, server: str, token: str, ca_file: Path | None = None, timeout: float = 10.0):
        self._server = server.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._context: ssl.SSLContext | None = None
        if server.startswith("https://"):
            self._context = ssl.create_default_context(
                cafile=None if ca_file is None else str(ca_file)
            )

    def call(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> JSON:
        """One request; raises ControlError with the server's Status on a non-2xx answer."""
        url = self._server + PREFIX + path.lstrip("/")
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout, context=self._context
            ) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                status = json.loads(text)
                raise ControlError(
                    err.code, str(status.get("reason", "")), str(status.get("message", text))
                ) from err
            except ValueError:
                raise ControlError(err.code, "", text) from err
        result = json.loads(payload) if payload else {}
        if not isinstance(result, dict):
            raise ControlError(0, "", f"unexpected answer {result!r}")
        return result

    def add_fault(self, effect: JSON, match: JSON | None = None, **trigger: Any) -> str:
        return str(
            self.call("POST", "faults", {"effect": effect, "match": match or {}, **trigger})["id"]
        )

    def remove_fault(self, rule_id: str) -> None:
        self.call("DELETE", f"faults/{rule_id}")

    def faults(self) -> list[JSON]:
        return list(self.call("GET", "faults")["items"])

    def clear_faults(self) -> int:
        return int(self.call("DELETE", "faults")["removed"])

    def partition(self, user: str, mode: str = "stall", on_heal: str = "reset") -> list[str]:
        return list(
            self.call("POST", "partition", {"user": user, "mode": mode, "on_heal": on_heal})[
                "rules"
            ]
        )

    def heal(self, user: str | None = None) -> int:
        return int(self.call("POST", "heal", {} if user is None else {"user": user})["removed"])

    def requests(self, **filters: Any) -> list[JSON]:
        return list(self.call("POST", "requests/query", filters)["items"])

    def count(self, **filters: Any) -> int:
        return int(self.call("POST", "requests/query", filters)["count"])

    def create_token(self, kind: str = "serviceaccount", **fields: Any) -> str:
        return str(self.call("POST", "tokens", {"kind": kind, **fields})["token"])
