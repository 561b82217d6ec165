"""What the command lines (``l2dbg``, ``l2lab``, ``l2agent``) share on top of typer, so that each
starts in little more than the interpreter's own start-up and keeps one parser.

- ``lean(command)``: typer converts every option value through a pydantic ``TypeAdapter``, and
  importing pydantic (plus building the adapters) costs more than half of a 150 ms start-up.
  ``lean`` gives each typer parameter of a command tree a converter without pydantic for the
  types these CLIs use (str, int, float, bool, enums, ``Path``, a ``parser=`` callable), with
  typer's own messages; any other type keeps typer's converter. It also switches help and errors
  to click's plain layout (rich costs start-up too, and its panels show ``<bool>`` beside
  ``--help``).
- ``LazyGroup``: a group whose commands live in their own modules, imported only when the command
  is used (or listed by ``--help``).
- ``LazyModule``: a module imported when first used, for the heavy modules of command bodies.
- ``OptionalValueCommand``: a command some of whose options may be given without a value
  (``-w`` alone is ``--watch 1s``), which click's parser has no notion of.
- ``completion_command``/``completion_app``: ``<prog> completion bash|zsh|fish|powershell``
  prints the script that hooks the shell into typer's completion; ``run`` answers the shell.

The hooks are typer's own extension points (``cls=``, a parameter's lazily built converter, the
parser a command makes), some of them private: pyproject.toml pins typer's minor version, and
``tests/unit/common/test_cli.py`` (typer's conversion against this one) and the sys.modules tests
of l2dbg and l2lab fail if an upgrade moves them.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import os
import re
from collections.abc import Callable, Mapping
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer._click.exceptions import BadParameter, UsageError
from typer._click.parser import _OptionParser, _ParsingState
from typer._click.utils import _escape_control_characters, make_default_short_help
from typer._coercion import RuntimeParam
from typer._param_types import coerce_cli_choice, coerce_cli_path
from typer.core import TyperCommand, TyperGroup, _TyperParameter

Converter = Callable[[Any, Any, Any], Any]  # (value, param, ctx) -> converted value

_ZERO_FRACTION = re.compile(r"(?<=\d)\.0+$")
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


class Invalid(ValueError):
    """A value of the wrong type; ``str(e)`` is the whole message."""


def _to_str(value: Any, _param: Any, _ctx: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def _to_int(value: Any, _param: Any, _ctx: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    try:
        return int(_ZERO_FRACTION.sub("", text))  # "3.0" is 3 to typer too, "3.5" is refused
    except ValueError:
        raise Invalid(
            "Input should be a valid integer, unable to parse string as an integer"
        ) from None


def _to_float(value: Any, _param: Any, _ctx: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise Invalid(
            "Input should be a valid number, unable to parse string as a number"
        ) from None


def _to_bool(value: Any, _param: Any, _ctx: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or text == "":
        return False
    raise Invalid("Input should be a valid boolean, unable to interpret input")


def _choice(choices: tuple[Any, ...], case_sensitive: bool) -> Converter:
    def convert(value: Any, _param: Any, ctx: Any) -> Any:
        return coerce_cli_choice(value, choices=choices, case_sensitive=case_sensitive, ctx=ctx)

    return convert


def _path(path_type: type[Path], info: Any) -> Converter:
    def convert(value: Any, param: Any, ctx: Any) -> Any:
        if not isinstance(value, path_type):
            value = path_type(os.fsdecode(value))
        return coerce_cli_path(value, info, path_type=path_type, param=param, ctx=ctx)

    return convert


def _parsed(parser: Callable[[Any], Any]) -> Converter:
    def convert(value: Any, _param: Any, _ctx: Any) -> Any:
        return parser(value)

    return convert


def converter(param: Any) -> Converter | None:
    """A converter without pydantic for this typer parameter, or None to keep typer's."""
    desc = param.type_descriptor
    ann, info = desc.annotation, desc.parameter_info
    if desc.is_file or desc.is_list or desc.is_tuple or desc.is_datetime:
        return None
    if info.parser is not None:
        return _parsed(info.parser)
    if desc.is_choice and desc.choices is not None:
        return _choice(desc.choices, desc.case_sensitive)
    if ann in (int, float):
        if info.min is not None or info.max is not None:
            return None
        return _to_int if ann is int else _to_float
    if ann is bool:
        return _to_bool
    if ann is str:
        return _to_str
    if desc.is_path and isinstance(ann, type) and issubclass(ann, Path) and not info.path_type:
        return _path(ann, info)
    return None


class LeanParam(RuntimeParam):
    """typer's runtime conversion contract, fulfilled without pydantic. (Not a dataclass
    itself: generating one costs a millisecond of start-up.)"""

    convert: Converter

    def __init__(self, parameter_info: Any, annotation: Any, convert: Converter) -> None:
        super().__init__(parameter_info, annotation)
        object.__setattr__(self, "convert", convert)

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.convert(value, param, ctx)
        except Invalid as e:
            raise BadParameter(str(e), ctx=ctx, param=param) from None
        except ValueError as e:  # a validator's refusal: worded as typer words it
            msg = _escape_control_characters(f"Value error, {e}")
            raise BadParameter(msg, ctx=ctx, param=param) from None


def lean(command: Any) -> Any:
    """Give every typer parameter of ``command`` and its loaded subcommands a converter without
    pydantic where one fits, and plain (click) help and errors. Returns ``command``."""
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for param in command.params:
        _lean_param(param)
    # typer makes the --help option on first use, from the context's option names.
    made = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        return _lean_param(made(ctx))

    command.get_help_option = get_help_option
    for sub in list(getattr(command, "commands", {}).values()):
        lean(sub)
    return command


def _lean_param(param: Any) -> Any:
    if isinstance(param, _TyperParameter) and param._runtime_param is None:
        convert = converter(param)
        if convert is not None:
            desc = param.type_descriptor
            param._runtime_param = LeanParam(desc.parameter_info, desc.annotation, convert)
    return param


class LazyModule:
    """A module imported when one of its attributes is first used: for a module of commands
    whose bodies need a heavy module, so that listing, completing or parsing them does not
    import it. Type it for mypy under ``TYPE_CHECKING`` with the real import."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


def command_of(app: typer.Typer) -> Any:
    """The click command typer builds from ``app``, made lean."""
    return lean(typer.main.get_command(app))


class LazyGroup(TyperGroup):
    """A group whose commands are built only when first used (or listed by ``--help``).

    Either name modules: subclass with ``lazy = {"name": "package.module:attr", ...}`` (listing
    order), each attr a ``typer.Typer`` or a function returning one, and pass the subclass as
    ``cls=`` of the ``typer.Typer``; or override ``lazy_names`` and ``load_command`` to make
    commands some other way. Commands registered on the typer app the usual way are listed after
    these.
    """

    lazy: Mapping[str, str] = {}

    def lazy_names(self) -> list[str]:
        return list(self.lazy)

    def load_command(self, name: str) -> Any:
        """The (lean) click command of the lazy command ``name``, or None if there is none."""
        if name not in self.lazy:
            return None
        module, _, attr = self.lazy[name].partition(":")
        app = getattr(importlib.import_module(module), attr)
        return command_of(app if isinstance(app, typer.Typer) else app())

    def lazy_help(self, name: str) -> tuple[str | None, str | None] | None:
        """(help, short help) of the lazy command ``name`` if they are known without building
        the command, so that the group's ``--help`` builds none; else None."""
        return None

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows: list[tuple[str, Any]] = []  # (name, (help, short help) or the built command)
        for name in self.list_commands(ctx):
            known = None if name in self.commands else self.lazy_help(name)
            if known is not None:
                rows.append((name, known))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd))
        if not rows:
            return
        # As typer's own listing: short help, else the help cut to fit beside the longest name.
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        lines = [(n, listed_help(c, limit)) for n, c in rows]
        with formatter.section("Commands"):
            formatter.write_dl(lines)

    def list_commands(self, ctx: Any) -> list[str]:
        names = self.lazy_names()
        return [*names, *(n for n in self.commands if n not in names)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = self.commands.get(cmd_name)
        if cmd is None:
            cmd = self.load_command(cmd_name)
            if cmd is not None:
                self.commands[cmd_name] = cmd
        return cmd

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        try:
            return self._click_resolve_command(ctx, args)
        except UsageError as e:
            # typer suggests from the commands built so far; the lazy ones count too.
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if self.suggest_commands and matches:
                suggestions = ", ".join(repr(m) for m in matches)
                e.message = f"{e.message.rstrip('.')}. Did you mean {suggestions}?"
            raise


def listed_help(cmd: Any, limit: int) -> str:
    """What a group's ``--help`` lists for a command: its short help, else its help cut to
    ``limit``, as click does; ``cmd`` is the command or its (help, short help)."""
    if not isinstance(cmd, tuple):
        return str(cmd.get_short_help_str(limit))
    help, short = cmd
    if short:
        return inspect.cleandoc(short).strip()
    return make_default_short_help(help, limit).strip() if help else ""


class OptionalValue:
    """An option's value when it is given alone, and which following word is its value."""

    __slots__ = ("accepts", "bare")

    def __init__(self, bare: str, accepts: Callable[[str], bool]) -> None:
        self.bare = bare
        self.accepts = accepts


class _OptionalValueParser(_OptionParser):
    def __init__(self, ctx: Any, optional: Mapping[str, OptionalValue]) -> None:
        super().__init__(ctx)
        self.optional = optional

    def _process_opts(self, arg: str, state: _ParsingState) -> None:
        name, eq, value = arg.partition("=")
        spec = self.optional.get(name)
        if spec is not None:
            if eq and not name.startswith("--"):
                arg = name + value  # -w=2s: as -w2s, not a value of "=2s"
            elif not eq and not (state.rargs and spec.accepts(state.rargs[0])):
                state.rargs.insert(0, spec.bare)
        super()._process_opts(arg, state)


class OptionalValueCommand(TyperCommand):
    """A command whose options named in ``optional_values`` (parameter name -> OptionalValue)
    may be given alone: ``-w`` and ``--watch`` mean ``--watch=<bare>``; ``-w 2s``, ``-w2s``,
    ``-w=2s``, ``--watch 2s`` and ``--watch=2s`` the value given. A following word the option
    does not accept (``-w -o json``) stays where it is."""

    optional_values: Mapping[str, OptionalValue] = {}

    def make_parser(self, ctx: Any) -> _OptionParser:
        optional = {
            opt: self.optional_values[p.name]
            for p in self.get_params(ctx)
            if p.name in self.optional_values
            for opt in (*p.opts, *p.secondary_opts)
        }
        parser = _OptionalValueParser(ctx, optional)
        for param in self.get_params(ctx):
            param.add_to_parser(parser, ctx)
        return parser


def complete_var(prog: str) -> str:
    """The environment variable through which the shell asks ``prog`` for completions."""
    return "_{}_COMPLETE".format(prog.replace("-", "_").upper())


def run(command: Any, prog: str, args: list[str]) -> None:
    """Run a command line (click's standalone mode: exits). When the shell asks for completions,
    typer's completion for each shell is registered first (typer does that only for apps made
    with ``add_completion``, which would add two options to every ``--help``)."""
    if os.environ.get(complete_var(prog)):
        from typer._completion_classes import completion_init

        completion_init()
    command.main(args=args, prog_name=prog)


class Shell(enum.StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"


def completion_command(prog: str) -> Callable[..., None]:
    """The function of ``<prog> completion SHELL``: prints the script to source for tab
    completion of ``prog`` (register it with ``app.command("completion")``)."""

    def completion(
        shell: Annotated[Shell, typer.Argument(help="bash, zsh, fish or powershell.")],
    ) -> None:
        """Print the shell code that completes commands, options and tables on TAB."""
        from typer._completion_shared import get_completion_script

        script = get_completion_script(
            prog_name=prog, complete_var=complete_var(prog), shell=shell.value
        )
        typer.echo(script)

    return completion


def completion_app(prog: str) -> typer.Typer:
    """``<prog> completion SHELL`` as a typer app of its own (for a LazyGroup)."""
    app = typer.Typer(rich_markup_mode=None, add_completion=False)
    app.command("completion", epilog=f"Example: source <({prog} completion bash)")(
        completion_command(prog)
    )
    return app
