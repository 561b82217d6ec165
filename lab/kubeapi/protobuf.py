"""Protobuf request bodies (``application/vnd.kubernetes.protobuf``), decoded into the JSON form.

kubectl's typed clients send built-in objects as protobuf: ``kubectl create namespace``,
``create configmap``, ``create secret``, ``create serviceaccount``, ``create service
loadbalancer``, ``create role``/``clusterrole``/``rolebinding``/``clusterrolebinding``. A real
apiserver accepts that for every built-in kind (never for custom resources), so this server
decodes the kinds those commands create and answers JSON, which clients accept whatever they
asked for. Other kinds are refused with 415, naming the media types that work.

A body is the envelope ``k8s\\x00`` + a ``runtime.Unknown`` message (typeMeta, raw, ...) whose
``raw`` is the object's own message. Field numbers and types come from the ``generated.proto``
files of k8s.io/api and k8s.io/apimachinery (schemas in protobuf_schema.py). The wire format is
proto2 as gogo-protobuf writes it: non-pointer fields are written even when empty, so empty values
are dropped here as Go's JSON ``omitempty`` would drop them, except for pointer fields, whose
zero value (``automountServiceAccountToken: false``) means something.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from lab.kubeapi.protobuf_schema import MESSAGES, ROOTS, Field

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """The body is not a Kubernetes protobuf object this server can read."""


class UnknownKind(ProtobufError):
    """A well-formed body of a kind this server has no schema for."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint longer than 10 bytes")


def wire_fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message, in order."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        if wire == _VARINT:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == _BYTES:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError(f"field {number}: length {length} past the end")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(data):
                raise ProtobufError(f"field {number}: truncated fixed-size value")
            yield number, wire, data[pos : pos + size]
            pos += size
        else:
            raise ProtobufError(f"field {number}: unsupported wire type {wire}")


def _expect(value: int | bytes, want: type, field: str) -> Any:
    if not isinstance(value, want):
        raise ProtobufError(f"{field}: unexpected wire type")
    return value


def _signed(value: int, bits: int) -> int:
    # int32 and int64 are sign-extended to 64 bits on the wire.
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32 and not -(1 << 31) <= value < 1 << 31:
        raise ProtobufError(f"int32 out of range: {value}")
    return value


def _time(data: bytes) -> str | None:
    seconds = nanos = 0
    for number, _, value in wire_fields(data):
        if number == 1:
            seconds = _signed(_expect(value, int, "Time.seconds"), 64)
        elif number == 2:
            nanos = _signed(_expect(value, int, "Time.nanos"), 32)
    if seconds == 0 and nanos == 0:
        return None  # the zero time: JSON null, omitted
    # metav1.Time is serialized to whole seconds in RFC 3339.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(data: bytes) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, _, value in wire_fields(data):
        if number == 1:
            kind = _expect(value, int, "IntOrString.type")
        elif number == 2:
            int_val = _signed(_expect(value, int, "IntOrString.intVal"), 32)
        elif number == 3:
            str_val = _expect(value, bytes, "IntOrString.strVal").decode()
    return str_val if kind == 1 else int_val


def _map_entry(data: bytes, bytes_value: bool) -> tuple[str, str]:
    key, val = "", ""
    for number, _, value in wire_fields(data):
        if number == 1:
            key = _expect(value, bytes, "map key").decode()
        elif number == 2:
            raw = _expect(value, bytes, "map value")
            val = base64.b64encode(raw).decode() if bytes_value else raw.decode()
    return key, val


def _scalar(field: Field, value: int | bytes) -> Any:
    kind = field.type
    if kind == "string":
        return _expect(value, bytes, field.name).decode()
    if kind == "bytes":
        return base64.b64encode(_expect(value, bytes, field.name)).decode()
    if kind == "bool":
        return bool(_expect(value, int, field.name))
    if kind in ("int32", "int64"):
        return _signed(_expect(value, int, field.name), 32 if kind == "int32" else 64)
    if kind == "Time":
        return _time(_expect(value, bytes, field.name))
    if kind == "IntOrString":
        return _int_or_string(_expect(value, bytes, field.name))
    if kind == "FieldsV1":
        for number, _, raw in wire_fields(_expect(value, bytes, field.name)):
            if number == 1:
                return json.loads(_expect(raw, bytes, "FieldsV1.Raw"))
        return None
    if kind in MESSAGES:
        return message(kind, _expect(value, bytes, field.name))
    raise ProtobufError(f"{field.name}: no decoder for type {kind}")


def _empty(value: Any) -> bool:
    return value is None or value in ("", 0, False) or value == {} or value == []


def message(name: str, data: bytes) -> dict[str, Any]:
    """Decode one message of the schema ``name`` into its JSON object."""
    schema = MESSAGES[name]
    out: dict[str, Any] = {}
    keep: set[str] = set()  # pointer fields that were written: their zero value means something
    for number, _, value in wire_fields(data):
        field = schema.get(number)
        if field is None:
            continue  # a field newer than our schema: ignored, as old servers do
        if field.pointer:
            keep.add(field.name)
        if field.type.startswith("map<"):
            key, val = _map_entry(_expect(value, bytes, field.name), field.type.endswith("bytes>"))
            out.setdefault(field.name, {})[key] = val
        elif field.repeated:
            out.setdefault(field.name, []).append(_scalar(field, value))
        else:
            out[field.name] = _scalar(field, value)
    return {k: v for k, v in out.items() if (k in keep and v is not None) or not _empty(v)}


def decode_object(body: bytes) -> dict[str, Any]:
    """A whole request body: the envelope, the Unknown wrapper, then the object's message."""
    try:
        return _decode_object(body)
    except ProtobufError:
        raise
    except ValueError as error:  # text that is not UTF-8, FieldsV1 that is not JSON
        raise ProtobufError(str(error)) from None


def _decode_object(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf envelope prefix")
    api_version = kind = ""
    raw = b""
    for number, _, value in wire_fields(body[len(MAGIC) :]):
        if number == 1:  # typeMeta
            for sub, _, text in wire_fields(_expect(value, bytes, "typeMeta")):
                if sub == 1:
                    api_version = _expect(text, bytes, "apiVersion").decode()
                elif sub == 2:
                    kind = _expect(text, bytes, "kind").decode()
        elif number == 2:
            raw = _expect(value, bytes, "raw")
        elif number == 3 and _expect(value, bytes, "contentEncoding"):
            raise ProtobufError("compressed protobuf bodies are not supported")
    root = ROOTS.get((api_version, kind))
    if root is None:
        raise UnknownKind(f"no protobuf schema for {kind or '?'} in {api_version or '?'}")
    return {"apiVersion": api_version, "kind": kind, **message(root, raw)}
