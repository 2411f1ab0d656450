"""The flags of `bench`: those several commands share, and `bench train`'s, made from RunConfig.

Every flag has its help; `bench train`'s come from `harness.config.RunConfig` (name, default, help
and check), so a new field or a changed default reaches the command line by itself.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from backends import DEFAULT_BACKEND
from harness.config import RunConfig
from harness.errors import BenchError

F = TypeVar("F", bound=Callable[..., object])

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        envvar="BENCH_DATA",
        metavar="PATH",
        help="aclImdb_v1.tar.gz or its extracted aclImdb/ folder; downloaded when not given.",
        show_default=False,
    ),
]


StudyOption = Annotated[
    str,
    typer.Option(
        "--study",
        metavar="NAME|FILE",
        help="A study name from studies/ (see `bench studies`) or a path.",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="DIR",
        help="Output folder \\[default: bench-runs/<study name>].",
        show_default=False,
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URL",
        help="Optuna RDB URL \\[default: sqlite:///<out>/optuna.db].",
        show_default=False,
    ),
]
TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        metavar="URI",
        help="MLflow tracking URI \\[default: sqlite:///<out>/mlflow.db].",
        show_default=False,
    ),
]


WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        metavar="N",
        min=1,
        max=256,
        help="Trial processes at once on this machine; with several GPUs each gets its own.",
    ),
]


VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        metavar="",  # a switch: no value to describe
        help="Show the frameworks' and MLflow's own output (start-up lines, logging) in the "
        "terminal too; without it, it goes to a log file.",
    ),
]


class Isolation(enum.StrEnum):
    """How each run is kept apart from `bench run` (`harness.run.isolation`)."""

    warm = "warm"
    process = "process"


IsolationOption = Annotated[
    Isolation,
    typer.Option(
        "--isolation",
        metavar="warm|process",
        help="warm: a long-lived worker process per slot and backend runs run after run "
        "(imports and data loaded once); process: a fresh process for every run (slower, "
        "the strictest). Either way a crash or an out-of-memory kill costs only its own run.",
    ),
]


# `bench train`'s own values for the two fields every RunConfig must be given.
TRAIN_DEFAULTS = {"backend": DEFAULT_BACKEND, "architecture": "lstm"}


def run_config_flags(command: F) -> F:
    """Give `command` a flag for every RunConfig field that has one, with the field's default,
    help and check (`RunConfig.accepts`), and call it with the RunConfig they make: the flags
    cannot drift from the config. A field's flag is its name (`--hidden-size`) unless it names
    another (`--arch`); booleans get `--x/--no-x`."""
    hints = typing.get_type_hints(RunConfig)
    flags: dict[str, str] = {}  # parameter name -> field name
    parameters = []
    for item in dataclasses.fields(RunConfig):
        accepts = RunConfig.accepts(item.name)
        if accepts.flag is None:
            continue
        name = accepts.flag or item.name
        flags[name] = item.name
        option = typer.Option(
            help=_flag_help(item.name),
            callback=_flag_check(item.name),
            metavar=_metavar(hints[item.name], RunConfig.accepts(item.name)),
        )
        default = TRAIN_DEFAULTS.get(item.name, item.default)
        annotation = Annotated[hints[item.name], option]  # type: ignore[valid-type]
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    own = [  # the command's own flags, after `config`
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in list(inspect.signature(command, eval_str=True).parameters.values())[1:]
    ]

    @functools.wraps(command)
    def wrapper(**given: Any) -> object:
        config = RunConfig(**{field: given.pop(name) for name, field in flags.items()})
        return command(config, **given)

    wrapper.__signature__ = inspect.Signature([*parameters, *own])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*parameters, *own]}
    return wrapper  # type: ignore[return-value]


def _metavar(hint: object, accepts: object) -> str:
    """What a flag's value looks like, in words a person reads (not a Python type): N for a
    count, X for a number, the choices for a choice; nothing for a switch."""
    if hint is bool:
        return ""  # a switch: no value to describe
    if getattr(accepts, "choices", ()):
        return "|".join(accepts.choices)  # type: ignore[attr-defined]
    return "N" if hint is int or hint == (int | None) else "X" if hint is float else "NAME"


def _flag_help(field: str) -> str:
    """The field's help, with its bounds when it has any: "Units per direction (>= 1)."."""
    accepts = RunConfig.accepts(field)
    bounds = accepts.expected().removeprefix("expected ").removeprefix("None or ")
    if accepts.choices or bounds == "a value":
        return accepts.help
    return f"{accepts.help.removesuffix('.')} ({bounds})."


def _flag_check(field: str) -> Callable[[Any], Any]:
    """A flag's callback: the value checked as RunConfig checks it, so a bad one is refused
    while the flags are read (one line naming the flag, exit code 2), before any work."""

    def check(value: Any) -> Any:
        try:
            if field == "backend":
                from backends import check_backend

                check_backend(value)  # imports no framework
            RunConfig.check_field(field, value)
        except BenchError as error:
            raise typer.BadParameter(str(error).removeprefix(f"{field}: ")) from None
        return value

    return check
