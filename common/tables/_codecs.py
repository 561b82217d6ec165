"""Codecs shared by the Kubernetes-object tables: string maps and string lists as JSON."""

from __future__ import annotations

from typing import Any

from statedb.table import FieldCodec, json_codec


def labels_codec(column: str) -> FieldCodec:
    def to_json(v: tuple[tuple[str, str], ...]) -> dict[str, str]:
        return dict(v)

    def from_json(d: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(d.items()))

    return json_codec(column, to_json, from_json)


def strings_codec(column: str) -> FieldCodec:
    return json_codec(column, list, tuple)


def optional_strings_codec(column: str) -> FieldCodec:
    """A list that may be absent (null), which the reference tells apart from empty."""

    def to_json(v: tuple[str, ...] | None) -> list[str] | None:
        return None if v is None else list(v)

    def from_json(v: list[str] | None) -> tuple[str, ...] | None:
        return None if v is None else tuple(v)

    return json_codec(column, to_json, from_json)


def any_codec(column: str) -> FieldCodec:
    """Free-form JSON (a LabelSelector, conditions), kept as parsed objects."""

    def ident(v: Any) -> Any:
        return v

    return json_codec(column, ident, ident)
