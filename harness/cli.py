"""`bench`: the command line. Subcommands parse flags and hand over to the harness.

Every error the user can fix arrives as a `BenchError` and leaves as one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import signal
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from harness.config import RunConfig
from harness.errors import BenchError
from harness.flags import (
    DataOption,
    Isolation,
    IsolationOption,
    OutOption,
    StorageOption,
    StudyOption,
    TrackingOption,
    VerboseOption,
    WorkersOption,
    run_config_flags,
)
from harness.system import leave

if TYPE_CHECKING:  # annotations only: `bench --help` stays fast
    from harness.run.places import RunPlaces
    from harness.study.schema import Study

ABOUT = (
    "rnnbench: train equivalent RNNs on four stacks (Keras on TensorFlow, JAX and PyTorch, and "
    "native PyTorch) and compare them."
)
app = typer.Typer(
    help=ABOUT,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., object])


@app.callback()
def bench() -> None:
    """rnnbench: train equivalent RNNs on four stacks (Keras on TensorFlow, JAX and PyTorch, and
    native PyTorch) and compare them."""


def one_line_errors(command: F) -> F:
    """Turn a BenchError into `error: <message>` on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except BenchError as error:
            console.print(
                f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@one_line_errors
@run_config_flags
def train(config: RunConfig, data: DataOption = None, verbose: VerboseOption = False) -> None:
    """Train one configuration on IMDB, show per-epoch progress and print the metrics.

    The framework's own output goes to a log file, named at the end (-v: to the terminal).
    """
    from harness.console import print_train_result, training_progress
    from harness.data.source import resolve_source
    from harness.quiet import native_output_to, train_log_path
    from harness.tasks import baseline_metrics, load_data
    from harness.training import train as run_training

    log = train_log_path()
    with native_output_to(log, verbose):
        dataset = load_data(config, resolve_source(data))
        baselines = baseline_metrics(dataset)
        with training_progress(console, config) as progress:

            def on_epoch(epoch) -> None:  # noqa: ANN001 - harness.training.EpochResult
                progress.epoch_done(epoch)
                if not (math.isfinite(epoch.train_loss) and math.isfinite(epoch.val_loss)):
                    raise BenchError(  # as `bench run` ends such a trial: diverged
                        f"diverged: loss is {epoch.train_loss} at epoch {epoch.epoch}; "
                        f"try a smaller --learning-rate (was {config.learning_rate:g})"
                    )

            result = run_training(config, dataset, on_epoch=on_epoch, on_batch=progress.batch_done)
    result.test.update({k: v for k, v in baselines.items() if k.startswith("unigram_test")})
    print_train_result(Console(), result)
    if not verbose:
        console.print(f"[dim]framework log: {escape(str(log))}[/]", highlight=False, soft_wrap=True)


@app.command("run")
@one_line_errors
def run_study(
    study: StudyOption,
    out: OutOption = None,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
    data: DataOption = None,
    workers: WorkersOption = 1,
    isolation: IsolationOption = Isolation.warm,
    verbose: VerboseOption = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            metavar="",
            help="Print the plan (searches and budgets, re-trainings, cross runs, stores, data, "
            "and an estimate from the study's earlier runs, if any) and stop: the places and "
            "store URLs are checked as the run would check them, and nothing is created.",
        ),
    ] = False,
    on_cpu: Annotated[
        bool,
        typer.Option(
            "--on-cpu",
            metavar="",
            help='Run a study sized for a GPU (\\[study] sized_for = "gpu") on a machine without '
            "one anyway; without it such a run stops at once with an estimate of its hours.",
        ),
    ] = False,
) -> None:
    """Search every (architecture, backend) of a study, re-train the best, track and report.

    Re-running the same command resumes: finished trials and runs are kept, not repeated.
    Each run's framework output is in its job folder's process.log (-v: also in the terminal).
    """
    from harness.quiet import quiet_libraries

    quiet_libraries(verbose)
    if dry_run:
        _print_plan(study, out, storage, tracking_uri, data, workers)
        return
    definition, places = _run_with_progress(
        study,
        out,
        storage,
        tracking_uri,
        data,
        workers,
        isolation,
        verbose,
        retrain=True,
        gpu_check=not on_cpu,
    )
    from harness.console import print_run_summary
    from harness.faults import told_in_one_line
    from harness.report.build import build_report
    from harness.report.render import print_report

    with told_in_one_line(places.named()):
        report = build_report(
            definition, places.tracking_uri, places.storage_url, places.out / "report"
        )
    print_report(Console(), report)
    print_run_summary(Console(), definition, places, report.experiment_id)


@app.command()
@one_line_errors
def worker(
    study: StudyOption,
    storage: Annotated[
        str,
        typer.Option(
            "--storage",
            metavar="URL",
            help="The shared Optuna RDB URL, e.g. postgresql://user@db-host/optuna (the "
            "password in PGPASSWORD or ~/.pgpass).",
        ),
    ],
    tracking_uri: TrackingOption = None,
    out: OutOption = None,
    data: DataOption = None,
    workers: WorkersOption = 1,
    isolation: IsolationOption = Isolation.warm,
    verbose: VerboseOption = False,
) -> None:
    """Join a study's searches from this machine: run trials until every budget is used.

    Start `bench run` with the same --storage and --tracking-uri on one machine (it also
    re-trains and reports) and `bench worker` on any others; see "Running on several machines".
    """
    from harness.quiet import quiet_libraries

    quiet_libraries(verbose)
    _run_with_progress(
        study, out, storage, tracking_uri, data, workers, isolation, verbose, retrain=False
    )
    console.print("[bold]worker done:[/] every search of the study has used its budget")


def _run_with_progress(
    study: str,
    out: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    data: Path | None,
    workers: int,
    isolation: Isolation,
    verbose: bool,
    *,
    retrain: bool,
    gpu_check: bool = False,
) -> tuple[Study, RunPlaces]:
    """The shared body of `bench run` and `bench worker`: searches (and re-trainings) with
    live progress; Ctrl-C or SIGTERM closes the running work as interrupted and exits 130.
    With `gpu_check`, a study sized for a GPU is refused on a machine without one."""
    from backends import check_backend
    from harness.data.source import resolve_source
    from harness.study.schema import load_study

    # Input first: a broken study file or data path, or a backend whose framework is not
    # installed, is reported before the heavy imports.
    definition = load_study(study)
    for backend in definition.backends:
        check_backend(backend)
    from harness.run.places import created_places, planned_places

    # Everything checked before anything is made: the places and store URLs, then the data
    # (found or downloaded, then tokenised once, with a progress bar; trials reuse the cache).
    # A refused start leaves the output folder as it found it.
    places = planned_places(definition, out, Path(), storage, tracking_uri)
    if gpu_check:  # before the data is fetched: a refusal costs seconds, not 80 MB
        from harness.run.sizing import refuse_without_gpu

        refuse_without_gpu(definition)
    places = dataclasses.replace(places, data=resolve_source(data))
    source = places.data
    from harness.console import StudyProgress
    from harness.data.corpus import load_corpus
    from harness.faults import told_in_one_line
    from harness.quiet import library_logs_to
    from harness.run.runner import StudyRunner, planned_jobs

    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop is a Ctrl-C, not a kill -9
    try:
        with told_in_one_line(places.named()):
            load_corpus(source)
            places = created_places(places)
            # Opening the stores checks the study's identity: a changed definition stops here.
            runner = StudyRunner(
                definition, places, lambda event: None, workers=workers, isolation=isolation.value
            )
            library_logs_to(places.out / "bench.log", verbose)  # MLflow is imported by now
            total = planned_jobs(definition, retrain=retrain)
            with StudyProgress(console, total, verbose) as progress:
                runner.on_event = progress
                if retrain:
                    runner.run()
                else:
                    runner.search_all()
    except KeyboardInterrupt:
        console.print(
            "[bold red]interrupted:[/] the running trials were closed as interrupted; "
            "re-run the same command to resume",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    return definition, places


def _print_plan(
    study: str,
    out: Path | None,
    storage: str | None,
    tracking_uri: str | None,
    data: Path | None,
    workers: int,
) -> None:
    """`bench run --dry-run`: what the run would do and where, from the study file, with an
    estimate of the time from the study's earlier runs where there are some."""
    from harness.data.source import planned_source
    from harness.run.places import planned_places
    from harness.stores import without_password
    from harness.study.schema import load_study

    definition = load_study(study)
    source = planned_source(data)  # checks a given path; downloads nothing
    places = planned_places(definition, out, Path(), storage, tracking_uri)  # creates nothing
    from harness.run.runner import planned_jobs  # MLflow and Optuna: after the cheap checks
    from harness.run.sizing import sizing_line
    from harness.tracking import finished_run_seconds

    seconds = finished_run_seconds(places.tracking_uri, definition.name)
    sizing = sizing_line(definition)  # a study sized for a GPU: this machine's estimate
    lines = [
        *definition.plan(),
        f"output: {places.out}",
        f"Optuna storage: {without_password(places.storage_url)}",
        f"MLflow tracking: {without_password(places.tracking_uri)}",
        f"data: {source}",
        _estimate(seconds, planned_jobs(definition), workers)
        if definition.budget.trials
        else "estimate: none (the searches stop on time, not on a trial count)",
        *([sizing] if sizing else []),
        "dry run: nothing was trained or stored",
    ]
    out_console = Console()
    for line in lines:
        out_console.print(line, highlight=False, soft_wrap=True, markup=False)


def _estimate(seconds: list[float], planned: int, workers: int) -> str:
    """The time the jobs left would take at the median pace of the study's finished runs."""
    if not seconds:
        return "estimate: none yet (no finished run of this study in its MLflow store)"
    left = max(planned - len(seconds), 0)
    median = statistics.median(seconds)
    minutes = left * median / workers / 60
    return (
        f"estimate: {left} of {planned} jobs left, about {minutes:.0f} min with {workers} "
        f"worker slot{'s' if workers > 1 else ''} at the median {median:.1f} s of the "
        f"{len(seconds)} finished run{'s' if len(seconds) > 1 else ''} (start-up not counted)"
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
@one_line_errors
def report(
    study: StudyOption,
    out: OutOption = None,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Build the comparison of a study that has run: every backend against its baseline."""
    from harness.quiet import quiet_libraries

    quiet_libraries(verbose)
    from harness.faults import told_in_one_line
    from harness.report.build import build_report, require_a_run
    from harness.report.render import print_report
    from harness.run.places import created_places, existing_places
    from harness.study.schema import load_study

    definition = load_study(study)
    places = existing_places(definition, out, storage, tracking_uri)
    with told_in_one_line(places.named()):
        require_a_run(definition, places.tracking_uri, places.storage_url)  # else nothing written
        places = created_places(places)
        result = build_report(
            definition, places.tracking_uri, places.storage_url, places.out / "report"
        )
    print_report(Console(), result)


@app.command()
@one_line_errors
def studies() -> None:
    """List the study files shipped in studies/."""
    from harness.study.schema import list_studies

    out = Console()
    for definition in list_studies():
        out.print(
            f"[bold]{definition.name:<16}[/] {escape(definition.description)}  "
            f"[dim]({escape(str(definition.path))})[/]",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
@one_line_errors
def doctor(
    backend: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME", help="Backend to check (repeatable) \\[default: installed]."),
    ] = None,
) -> None:
    """Check each backend before a study: versions, device, kernels, threads, logit parity."""
    from harness.doctor.check import run_doctor

    raise typer.Exit(run_doctor(Console(), backend))


@app.command()
@one_line_errors
def perf(
    quick: Annotated[
        bool,
        typer.Option(metavar="", help="Fewer steps and points: 16 min on 2 CPU cores, 4 backends."),
    ] = False,
    out: Annotated[
        Path, typer.Option(metavar="DIR", help="Where benchmarks.md, perf.json and the charts go.")
    ] = Path("bench-runs/perf"),
    arch: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Architecture to measure (repeatable) \\[default: all four]."
        ),
    ] = None,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME", help="Backend to measure (repeatable) \\[default: every installed one]."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Batches per timed pass.", show_default=False),
    ] = None,
    passes: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Timed passes after the warm-up pass.")
    ] = None,
    sequence_lengths: Annotated[
        list[int] | None,
        typer.Option("--sequence-length", min=1, metavar="N", help="Scaling point (repeatable)."),
    ] = None,
    batch_sizes: Annotated[
        list[int] | None,
        typer.Option("--batch-size", min=1, metavar="N", help="Scaling point (repeatable)."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="CPU threads per framework \\[default: all cores]."),
    ] = None,
    data: DataOption = None,
) -> None:
    """Time the frameworks through the harness and the plain way; write the benchmark tables."""
    from harness.perf.plan import run_perf

    run_perf(
        console,
        quick=quick,
        out=out,
        data=data,
        overrides={
            "architectures": tuple(arch) if arch else None,
            "backends": tuple(backend) if backend else None,
            "steps": steps,
            "passes": passes,
            "sequence_lengths": tuple(sequence_lengths) if sequence_lengths else None,
            "batch_sizes": tuple(batch_sizes) if batch_sizes else None,
            "threads": threads,
        },
    )


# The parser's own value errors (typer's, in pydantic's words), reworded as every other
# refusal: "<flag>: expected ...; received ...".
PARSER_WORDS = (
    (re.compile(r"^Input should be greater than or equal to (\S+?)\.?$"), r"expected >= \1"),
    (re.compile(r"^Input should be greater than (\S+?)\.?$"), r"expected > \1"),
    (re.compile(r"^Input should be less than or equal to (\S+?)\.?$"), r"expected <= \1"),
    (re.compile(r"^Input should be a valid integer.*$"), r"expected an integer"),
    (re.compile(r"^Input should be a valid number.*$"), r"expected a number"),
    (re.compile(r"^'(.*?)' is not one of (.*?)\.?$"), r"expected one of \2; received '\1'"),
    (
        re.compile(r"^'?(.*?)'? is not a valid (integer|float)\.?$"),
        r"expected an \2; received '\1'",
    ),
    (re.compile(r"^(.*?) is not in the range (.*?)\.?$"), r"expected \2; received \1"),
)


def _one_style(error: typer.TyperException) -> str:
    """A usage error in the one wording of rnnbench's refusals, naming the flag first."""
    param = getattr(error, "param", None)
    if not isinstance(error, typer.BadParameter) or param is None:
        return error.format_message()
    flag = max(getattr(param, "opts", None) or [param.name or "value"], key=len)
    if type(error).__name__ == "MissingParameter":  # typer's own click: no public name
        return f"{flag}: expected a value; received none"
    message = error.message.removeprefix("Value error, ")
    for pattern, words in PARSER_WORDS:
        message = pattern.sub(words, message)
    if message.startswith("expected") and "received" not in message:
        message += f"; received {_given(flag)!r}"
    return f"{flag}: {message}"


def _given(flag: str) -> str:
    """What the user typed after `flag` on this command line."""
    arguments = sys.argv[1:]
    for index, argument in enumerate(arguments):
        if argument == flag and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(flag + "="):
            return argument.split("=", 1)[1]
    return ""


def main() -> None:
    """Run `bench`; a bad flag or value is one line and exit code 2, like every other mistake."""
    try:
        code = app(standalone_mode=False, prog_name="bench")
    except typer.TyperException as error:  # a usage error (exit code 2), or another refusal
        context = getattr(error, "ctx", None)  # usage errors know their command
        where = f" (see `{context.command_path} --help`)" if context else ""
        console.print(
            f"[bold red]error:[/] {escape(_one_style(error))}{escape(where)}",
            highlight=False,
            soft_wrap=True,
        )
        leave(error.exit_code)
    except typer.Abort:  # Ctrl-C outside a study run
        leave(130)
    leave(code if isinstance(code, int) else 0)
