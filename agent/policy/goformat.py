"""Go's ``%#v`` of the values apimachinery puts in its validation errors, so messages match the
reference byte for byte (``[]string(nil)``, ``[]string{"a", "b"}``, ``"x"``)."""

from __future__ import annotations

import json
from collections.abc import Sequence


def go_quote(s: str) -> str:
    # Go's %q; JSON escaping agrees for the printable ASCII labels are made of.
    return json.dumps(s, ensure_ascii=False)


def go_strings(values: Sequence[str] | None) -> str:
    if values is None:
        return "[]string(nil)"
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"
