"""Structural OpenAPI v3 schemas of CRDs: pruning unknown fields, then validation.

The real apiextensions-apiserver prunes every field the schema does not declare (unless
`x-kubernetes-preserve-unknown-fields`), reports the pruned paths as warnings (or rejects them
with `fieldValidation=Strict`), then validates types, enums, patterns, lengths, required fields
and `date-time` formats. Messages follow its wording so a 422 looks familiar.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from lab.kubeapi.errors import Cause

Schema = dict[str, Any]


def prune(value: Any, schema: Schema, path: str, pruned: list[str]) -> Any:
    """Drop undeclared fields in place-free fashion; record each dropped path."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return value
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        properties: dict[str, Schema] | None = schema.get("properties")
        additional = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                result[key] = prune(item, properties[key], child, pruned)
            elif isinstance(additional, dict):
                result[key] = prune(item, additional, child, pruned)
            elif (
                additional is True
                or schema.get("x-kubernetes-preserve-unknown-fields")
                or (properties is None and additional is None and not path)
            ):
                result[key] = item
            else:
                pruned.append(child)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            prune(item, schema["items"], f"{path}[{n}]", pruned) for n, item in enumerate(value)
        ]
    return value


_GO_TYPES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    list: "array",
    dict: "object",
}


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    return _GO_TYPES.get(type(value), "unknown")


def _type_ok(value: Any, want: str) -> bool:
    if want == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if want == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if want == "string":
        return isinstance(value, str)
    if want == "boolean":
        return isinstance(value, bool)
    if want == "array":
        return isinstance(value, list)
    if want == "object":
        return isinstance(value, dict)
    return True


def _show(value: Any) -> str:
    return json.dumps(value)


def validate(value: Any, schema: Schema, path: str, causes: list[Cause]) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            causes.append(
                Cause(
                    "FieldValueTypeInvalid",
                    path,
                    f'Invalid value: "null": {path} in body must be of type {schema["type"]}: "null"',
                )
            )
        return
    want = schema.get("type")
    if want and not _type_ok(value, want):
        got = _type_of(value)
        causes.append(
            Cause(
                "FieldValueTypeInvalid",
                path,
                f'Invalid value: "{got}": {path} in body must be of type {want}: "{got}"',
            )
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(_show(v) for v in schema["enum"])
        causes.append(
            Cause(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {_show(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, str):
        _validate_string(value, schema, path, causes)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {value}: {path} in body should be greater than or equal to {schema['minimum']}",
                )
            )
        if "maximum" in schema and value > schema["maximum"]:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {value}: {path} in body should be less than or equal to {schema['maximum']}",
                )
            )
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            causes.append(
                Cause(
                    "FieldValueTooMany",
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                )
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    path,
                    f"Invalid value: {len(value)}: {path} in body should have at least {schema['minItems']} items",
                )
            )
        items = schema.get("items")
        if isinstance(items, dict):
            for n, item in enumerate(value):
                validate(item, items, f"{path}[{n}]", causes)
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen: set[str] = set()
            for n, item in enumerate(value):
                if isinstance(item, dict):
                    ident = json.dumps([item.get(k) for k in keys])
                    if ident in seen:
                        causes.append(
                            Cause(
                                "FieldValueDuplicate",
                                f"{path}[{n}]",
                                f"Duplicate value: {json.dumps({k: item.get(k) for k in keys})}",
                            )
                        )
                    seen.add(ident)
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                causes.append(
                    Cause(
                        "FieldValueRequired", f"{path}.{name}" if path else name, "Required value"
                    )
                )
        properties = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if key in properties:
                validate(item, properties[key], child, causes)
            elif isinstance(additional, dict):
                validate(item, additional, child, causes)


def _validate_string(value: str, schema: Schema, path: str, causes: list[Cause]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(
            Cause(
                "FieldValueTooLong",
                path,
                f"Too long: may not be more than {schema['maxLength']} bytes",
            )
        )
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(
            Cause(
                "FieldValueInvalid",
                path,
                f'Invalid value: "{value}": {path} in body should be at least {schema["minLength"]} chars long',
            )
        )
    pattern = schema.get("pattern")
    if pattern and not re.search(pattern, value):
        causes.append(
            Cause(
                "FieldValueInvalid",
                path,
                f"Invalid value: \"{value}\": {path} in body should match '{pattern}'",
            )
        )
    if schema.get("format") == "date-time" and not is_rfc3339(value):
        causes.append(
            Cause(
                "FieldValueInvalid",
                path,
                f'Invalid value: "{value}": {path} in body must be of type date-time: "{value}"',
            )
        )


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def is_rfc3339(value: str) -> bool:
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
