"""The ``l2dbg statedb`` command group: one subcommand per table of ``common.tables.CATALOGUE``
(generated, so a new table needs no CLI code), plus ``dump`` and ``query``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from common.cli import LazyGroup, OptionalValue, OptionalValueCommand, command_of
from common.durations import is_interval
from common.tables import CATALOGUE
from dbg import statedb_ops
from dbg.errors import PROG, report
from dbg.options import StateDirOpt, run, state_dir_of
from dbg.output import DataOutput, Output
from statedb import Table

DEFAULT_WATCH = "1s"  # the interval of a bare -w / --watch
OUTPUT_HELP = (
    "table: rich on a terminal, the plain layout when piped; plain: always the reference's"
    " aligned columns; json; yaml."
)
WATCH_HELP = (
    "Print the table, then each row that changes as it commits (deleted rows marked '- ')."
    " Optional interval, e.g. -w, --watch=100ms, -w 2s [default interval: 1s]."
)

OutputOpt = Annotated[Output, typer.Option("--output", "-o", help=OUTPUT_HELP)]


class TableCommand(OptionalValueCommand):
    """``-w``/``--watch`` take an optional interval, as cilium-dbg's do: alone they mean 1s, and
    only a following word that is an interval (``-w 2s``) is taken as its value."""

    optional_values = {"watch": OptionalValue(DEFAULT_WATCH, is_interval)}


class StatedbGroup(LazyGroup):
    """One command per table of the catalogue, each built when used; an unknown table is one
    line (exit 1) instead of click's usage error."""

    def lazy_names(self) -> list[str]:
        return list(CATALOGUE)

    def load_command(self, name: str) -> Any:
        table = CATALOGUE.get(name)
        return None if table is None else command_of(_table_app(table))

    def lazy_help(self, name: str) -> tuple[str | None, str | None] | None:
        table = CATALOGUE.get(name)
        return (None, table.doc) if table is not None and table.doc else None

    def resolve_command(
        self,
        ctx: Any,  # typer's vendored click Context
        args: list[str],
    ) -> tuple[str | None, Any, list[str]]:
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            report(statedb_ops.unknown_table(args[0]))
            raise typer.Exit(1)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="statedb",
    cls=StatedbGroup,
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=True,
    help=(
        "Inspect the agent's state database (read-only). One subcommand per table: "
        + ", ".join(CATALOGUE)
        + "; plus dump and query."
    ),
)


@app.callback()
def statedb_group(state_dir: StateDirOpt = None) -> None:
    """Inspect the agent's state database (read-only)."""


def _table_app(table: Table[Any]) -> typer.Typer:
    """The typer app of ``l2dbg statedb <table>``."""

    def show(
        ctx: typer.Context,
        output: OutputOpt = Output.TABLE,
        watch: Annotated[
            str | None, typer.Option("--watch", "-w", help=WATCH_HELP, metavar="INTERVAL")
        ] = None,
        state_dir: StateDirOpt = None,
        count: Annotated[
            int | None, typer.Option("--count", hidden=True, help="Stop after N batches.")
        ] = None,
    ) -> None:
        directory = state_dir_of(ctx)
        if watch is None:
            run(statedb_ops.show_table, directory, table.name, output, sys.stdout)
            return
        from dbg.watch import watch as watch_table
        from dbg.watch import watch_interval

        def go() -> None:
            interval = watch_interval(watch)
            watch_table(directory, table, output, interval, sys.stdout, count=count)

        run(go)

    columns = ", ".join(table.header)
    table_app = typer.Typer(rich_markup_mode=None, add_completion=False)
    table_app.command(
        name=table.name,
        cls=TableCommand,
        help=(
            f"{table.doc or 'Show the ' + table.name + ' table.'}\n\n"
            f"Columns: {columns}. Rows in primary-key order; -o json/yaml show every field."
        ),
        short_help=table.doc or None,
        epilog=f"Example: {PROG} statedb {table.name} -o plain",
    )(show)
    return table_app


@app.command(short_help="Every table as one JSON object.")
def dump(
    ctx: typer.Context,
    output: Annotated[
        DataOutput, typer.Option("--output", "-o", help="json (default) or yaml.")
    ] = DataOutput.JSON,
    state_dir: StateDirOpt = None,
) -> None:
    """Every table in the database as one JSON object: {"<table>": [rows...], ...}."""
    run(statedb_ops.dump, state_dir_of(ctx), output, sys.stdout)


@app.command(short_help="Run read-only SQL against the database.")
def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="One read-only SQL statement (SELECT, WITH).")],
    output: OutputOpt = Output.TABLE,
    state_dir: StateDirOpt = None,
) -> None:
    """Run read-only SQL against the database; anything that writes is refused.

    SQL tables are named as in docs/statedb.md (l2-announce is l2_announce).
    """
    run(statedb_ops.query, state_dir_of(ctx), sql, output, sys.stdout)
