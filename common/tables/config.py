"""Table ``config``: the agent's resolved configuration, one row per key, with where each value
came from (flag, env, config-dir or default). ``l2dbg config --all`` prints it."""

from __future__ import annotations

from dataclasses import dataclass

from statedb.table import Table


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    key: str  # the flag / ConfigMap key, e.g. enable-l2-announcements
    name: str  # as `l2dbg config --all` shows it, e.g. EnableL2Announcements
    value: str  # as shown: durations as 15s, lists as [a b]
    source: str  # flag | env | config-dir | default


CONFIG: Table[ConfigEntry] = Table(
    name="config",
    sql_name="config",
    row_type=ConfigEntry,
    primary_key=("key",),
    header=("Key", "Value", "Source"),
    format_row=lambda c: (c.key, c.value, c.source),
    to_json=lambda c: {"Key": c.key, "Name": c.name, "Value": c.value, "Source": c.source},
    doc="The agent's resolved configuration.",
)
