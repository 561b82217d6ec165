"""The agent's effective configuration, written once at start into the ``config`` table, so
``l2dbg config`` shows what the running agent uses and where each value came from."""

from __future__ import annotations

from collections.abc import Mapping

from agent.config import KEYS, Config, display_value
from common.tables.config import CONFIG, ConfigEntry
from statedb import Database


def write_config(db: Database, config: Config, sources: Mapping[str, str]) -> None:
    """Every key with its value as shown to people and its source (flag, environment, file)."""
    with db.write_txn(CONFIG) as txn:
        for k in KEYS:
            value = display_value(k, config.value(k.name))
            txn.upsert(CONFIG, ConfigEntry(k.name, k.go_name, value, sources.get(k.name, "")))
