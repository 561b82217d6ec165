"""Server-side Table output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).

kubectl asks for Tables on `get` and prints the server's columns verbatim; so `NAME HOLDER AGE`
for Leases and a CRD's additionalPrinterColumns come from here. Dates become ages in the
apimachinery HumanDuration style ("34s", "6m16s", "2d20h").
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from lab.kubeapi.resources import PrinterColumn, ResourceType


def wants_table(accept: str) -> bool:
    return any("as=Table" in part.replace(" ", "") for part in accept.split(","))


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _age(value: Any, now: datetime) -> str:
    if not isinstance(value, str) or not value:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((now - then).total_seconds())


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def json_path(obj: Any, path: str) -> Any:
    """The simple JSONPath subset printer columns use: `.a.b`, `.a[0].b`."""
    current = obj
    for m in _STEP.finditer(path.strip().lstrip("{").rstrip("}")):
        name, index = m.group(1), m.group(2)
        if name is not None:
            if not isinstance(current, Mapping):
                return None
            current = current.get(name)
        else:
            if not isinstance(current, list) or int(index) >= len(current):
                return None
            current = current[int(index)]
    return current


def _cell(column: PrinterColumn, obj: Mapping[str, Any], custom: bool, now: datetime) -> Any:
    value = column.compute(obj) if column.compute else json_path(obj, column.json_path)
    if column.type == "date":
        return _age(value, now) if value is not None else ("<unknown>" if not custom else None)
    if column.type == "timestamp":
        return value or "<unknown>"
    if value is None:
        return None if custom else ""
    if custom and isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value


def table(
    rt: ResourceType,
    version: str,
    objects: Sequence[Mapping[str, Any]],
    include_object: str,
    list_meta: Mapping[str, Any],
) -> dict[str, Any]:
    columns = rt.columns.get(version) or rt.columns.get("*") or ()
    now = datetime.now(UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [_cell(c, obj, rt.custom, now) for c in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_meta),
        "columnDefinitions": [
            {
                "name": c.name,
                "type": "string" if c.type in ("date", "timestamp") and not rt.custom else c.type,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            }
            for c in columns
        ],
        "rows": rows,
    }
