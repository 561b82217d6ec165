from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from statedb import Database, Status, Table


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    value: int = 0
    status: Status = field(default_factory=Status.pending)


@dataclass(frozen=True, slots=True)
class Other:
    id: int
    text: str = ""


ITEMS: Table[Item] = Table(
    name="items",
    sql_name="items",
    row_type=Item,
    primary_key=("key",),
    indexes={"value": ("value",)},
    header=("Key", "Value"),
    format_row=lambda i: (i.key, str(i.value)),
    to_json=lambda i: {"key": i.key, "value": i.value},
)

ITEMS_BY_VALUE = ITEMS.index("value")

OTHERS: Table[Other] = Table(
    name="others",
    sql_name="others",
    row_type=Other,
    primary_key=("id",),
    header=("ID", "Text"),
    format_row=lambda o: (str(o.id), o.text),
    to_json=lambda o: {"id": o.id, "text": o.text},
)


@pytest.fixture
def db() -> Iterator[Database]:
    d = Database.open(None, [ITEMS, OTHERS])
    yield d
    d.close()
