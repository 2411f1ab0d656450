"""What a person sees in the terminal: live training progress and the metrics tables."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from harness.config import RunConfig
from harness.run.events import (
    DeadTrial,
    Epoch,
    Event,
    FromJob,
    Measured,
    Measuring,
    RetrainDone,
    RetrainStarted,
    SearchOpened,
    Skipped,
    TrialDone,
    TrialStarted,
)
from harness.stores import is_server, without_password
from harness.training import EpochResult, TrainResult

if TYPE_CHECKING:  # only for annotations: `bench train` need not import Optuna or MLflow
    from harness.run.places import RunPlaces
    from harness.study.schema import Study


@dataclass
class TrainingProgress:
    """Callbacks for `harness.training.train` that drive a rich progress display."""

    progress: Progress
    task: TaskID
    config: RunConfig
    epoch: int = 1
    best_val_accuracy: float = float("nan")

    def batch_done(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def epoch_done(self, result: EpochResult) -> None:
        if not result.val_accuracy <= self.best_val_accuracy:  # also true while best is nan
            self.best_val_accuracy = result.val_accuracy
        self.progress.console.print(
            f"epoch {result.epoch}/{self.config.epochs}  "
            f"loss {result.train_loss:.4f}  acc {result.train_accuracy:.4f}  "
            f"val_loss {result.val_loss:.4f}  val_acc {result.val_accuracy:.4f}  "
            f"{result.epoch_seconds:.1f}s  {result.samples_per_second:,.0f} samples/s",
            highlight=False,
        )
        self.epoch = result.epoch + 1
        if self.epoch <= self.config.epochs:
            self.progress.reset(self.task, description=self._description())

    def _description(self) -> str:
        c = self.config
        return f"{c.backend}/{c.architecture} epoch {self.epoch}/{c.epochs}"


@contextmanager
def training_progress(console: Console, config: RunConfig) -> Iterator[TrainingProgress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batches"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task(f"{config.backend}/{config.architecture} epoch 1/{config.epochs}")
        yield TrainingProgress(progress, task, config)


def print_train_result(console: Console, result: TrainResult) -> None:
    c = result.config
    device = result.accelerator or "CPU"
    epochs = Table(
        title=f"{c.backend}/{c.architecture} ({result.framework} {result.framework_version}, "
        f"{device}, {result.parameter_count:,} trainable parameters, {result.kernel} kernel, "
        f"denormals {result.denormal_mode})"
    )
    for column in (
        "epoch",
        "train loss",
        "train acc",
        "val loss",
        "val acc",
        "val ppl",
        "seconds",
        "samples/s",
    ):
        epochs.add_column(column, justify="right")
    for e in result.epochs:
        epochs.add_row(
            str(e.epoch),
            f"{e.train_loss:.4f}",
            f"{e.train_accuracy:.4f}",
            f"{e.val_loss:.4f}",
            f"{e.val_accuracy:.4f}",
            f"{e.val_perplexity:.4f}",
            f"{e.epoch_seconds:.2f}",
            f"{e.samples_per_second:,.0f}",
        )
    console.print(epochs)
    test = Table(title="test split")
    test.add_column("metric")
    test.add_column("value", justify="right")
    for name, value in result.test.items():
        test.add_row(name, f"{value:.4f}")
    if result.best_epoch is not None:  # --test-weights best_epoch: the figures above are its
        test.add_row("weights of epoch", str(result.best_epoch))
        for name, value in result.final_test.items():
            test.add_row(f"{name} (final epoch)", f"{value:.4f}")
    test.add_row("time to first epoch (s)", f"{result.time_to_first_epoch:.2f}")
    test.add_row("total train time (s)", f"{result.train_seconds:.2f}")
    for name, value in result.memory.items():
        test.add_row(name.replace("_bytes", " (MiB)"), f"{value / 2**20:,.1f}")
    console.print(test)
    if result.confusion is not None:
        (tn, fp), (fn, tp) = result.confusion.tolist()
        console.print(f"confusion matrix (rows true neg/pos): [[{tn} {fp}] [{fn} {tp}]]")


@dataclass
class SearchLine:
    """One search as the study display shows it: its trials so far and its best value."""

    budget: int | None
    done: int = 0
    best: float | None = None

    def render(self) -> str:
        budget = f"/{self.budget}" if self.budget else ""
        best = "" if self.best is None else f" best {self.best:.4f}"
        return f"{self.done}{budget} trials{best}"


class StudyBar(Progress):
    """rich's progress bar under a table of the searches: a row per architecture, a column per
    backend, each cell its trials so far and its best value."""

    def __init__(
        self,
        searches: dict[str, SearchLine],
        running: dict[str, str],
        *args: object,
        **kwargs: object,
    ) -> None:
        self.searches = searches  # first: rich draws the display while it is being built
        self.running = running  # job label -> its latest status, a line each under the bar
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def get_renderables(self) -> Iterator[Table | Text]:
        # Copies (made atomically): worker threads change these while rich draws them.
        searches, running = dict(self.searches), list(self.running.values())
        if searches:
            yield search_table(searches)
        yield self.make_tasks_table(self.tasks)
        for status in running:
            yield Text(f"  {status}", style="dim", overflow="ellipsis", no_wrap=True)


def search_table(searches: dict[str, SearchLine]) -> Table:
    """`arch/backend` -> line, as a grid of architectures by backends."""
    cells = {name.partition("/")[::2]: line for name, line in searches.items()}
    architectures = list(dict.fromkeys(arch for arch, _ in cells))
    backends = list(dict.fromkeys(backend for _, backend in cells))
    table = Table.grid(padding=(0, 3))
    table.add_row("", *(f"[bold]{escape(backend)}[/]" for backend in backends))
    for arch in architectures:
        shown = [cells[arch, b].render() if (arch, b) in cells else "" for b in backends]
        table.add_row(f"[bold]{escape(arch)}[/]", *shown)
    return table


class StudyProgress:
    """Live view of `bench run`: each search with its trials and best value so far, one bar over
    every job (trials, re-trainings and cross runs) with the elapsed time and an estimate of the
    rest, the jobs running now, and a line per finished job.

    The estimate counts only jobs finished by this process (resumed ones cost nothing) and
    divides the wall time by them, so several workers at once are accounted for. Off a
    terminal the live part is left out (rich draws it once, at the end) and the line of each
    finished job carries the count and the estimate, so a log file says the same.
    """

    def __init__(self, console: Console, total_jobs: int, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose  # each finished job's process.log is shown after its line
        self.searches: dict[str, SearchLine] = {}
        self.running: dict[str, str] = {}  # job label -> its latest status
        self.progress = StudyBar(
            self.searches,
            self.running,
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("jobs"),
            TimeElapsedColumn(),
            TextColumn("eta {task.fields[eta]}"),
            console=console,
        )
        self.task = self.progress.add_task("study", total=total_jobs, eta="-")
        self.started = time.monotonic()
        self.finished_here = 0  # jobs this process ran to an end (not resumed ones)
        self.lock = threading.Lock()

    def __enter__(self) -> StudyProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        with self.lock:  # worker slots report from their own threads
            self._handle(event)

    def _handle(self, event: Event) -> None:
        match event:
            case SearchOpened():
                self.progress.advance(self.task, event.done)
                self.searches[_short(event.name)] = SearchLine(event.budget, event.done)
                self.console.print(
                    f"[bold]{escape(event.name)}[/]: search, {event.done} of "
                    f"{event.budget or 'unlimited'} trials already finished"
                )
            case DeadTrial():
                self.console.print(
                    f"  {event.name} trial {event.trial}: its process died; retried",
                    highlight=False,
                )
            case TrialStarted() | RetrainStarted():
                self.running[event.job] = event.job
                if self.verbose:
                    self.console.print(f"  {event.job} started", highlight=False, markup=False)
            case FromJob(job, Epoch() as epoch):
                self.running[job] = (
                    f"{job} epoch {epoch.epoch}/{epoch.epochs} "
                    f"val_acc {epoch.metrics['val_accuracy']:.4f} "
                    f"val_loss {epoch.metrics['val_loss']:.4f}"
                )
            case TrialDone():
                line = self.searches.setdefault(_short(event.search), SearchLine(None))
                line.done += 1
                line.best = event.best
                value = "" if event.value is None else f" value {event.value:.4f}"
                best = "" if event.best is None else f" (best {event.best:.4f})"
                self._finished(event.job, f"{event.state}{value}{best}", event.reason, event.log)
            case RetrainDone():
                shown = "".join(
                    f" {label} {event.metrics[name]:.4f}"
                    for name, label in (
                        ("test_accuracy", "test_acc"),
                        ("test_perplexity", "test_ppl"),
                    )
                    if name in event.metrics
                )
                self._finished(event.job, f"{event.state}{shown}", event.reason, event.log)
            case Skipped():
                self.progress.advance(self.task)

    def _finished(self, job: str, outcome: str, reason: str | None, log: str | None) -> None:
        self.finished_here += 1
        self.progress.advance(self.task)
        task = next(t for t in self.progress.tasks if t.id == self.task)
        eta = self.remaining(task.completed, task.total)
        self.progress.update(self.task, eta=eta)
        because = f": {reason}" if reason else ""
        count = f"[{task.completed:.0f}/{task.total:.0f}, eta {eta}]"
        self.console.print(f"  {job} {outcome}{because} {count}", highlight=False, markup=False)
        self.running.pop(job, None)
        if self.verbose and log and Path(log).is_file():
            for text in Path(log).read_text(errors="replace").splitlines():
                self.console.print(f"    | {text}", style="dim", highlight=False, markup=False)

    def remaining(self, completed: float, total: float | None) -> str:
        """The rest of the study at the pace of this process's finished jobs."""
        left = (total or 0) - completed
        return time_left(time.monotonic() - self.started, self.finished_here, left)


def time_left(elapsed: float, finished: int, left: float) -> str:
    """`left` jobs at the pace of `finished` jobs in `elapsed` seconds, e.g. '3m05s'."""
    if left <= 0:
        return "0s"
    minutes, seconds = divmod(round(elapsed / finished * left), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _short(search: str) -> str:
    """`<study>/<architecture>/<backend>` without the study's name, which every line shares."""
    return search.split("/", 1)[-1]


def print_run_summary(
    console: Console, study: Study, places: RunPlaces, experiment_id: str
) -> None:
    """Where everything went, and the commands that open it (unwrapped, to copy and paste)."""
    from harness.tracking import runs_page

    tracking = without_password(places.tracking_uri)
    lines = {
        "output folder": str(places.out),
        "report": str(places.out / "report" / "report.html"),
        "trial logs": str(places.out / "jobs"),
        **(
            {}
            if is_server(tracking)
            else {"compare runs": f"mlflow ui --backend-store-uri {tracking}"}
        ),
        "runs page": runs_page(places.tracking_uri, experiment_id),
        "inspect searches": f"optuna-dashboard {without_password(places.storage_url)}",
    }
    console.rule(f"study {study.name}")
    for label, value in lines.items():
        console.print(f"[bold]{label + ':':<18}[/]{escape(value)}", soft_wrap=True, highlight=False)


class PerfProgress:
    """Live view of `bench perf`: one bar over every measurement, named as it starts."""

    def __init__(self, console: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("measurements"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task("starting", total=total)

    def __enter__(self) -> PerfProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        match event:
            case Measuring(backend, point):
                label = point["option"] or f"{point['kind']} {point['sequence_length']}x"
                if not point["option"]:
                    label += str(point["batch_size"])
                self.progress.update(
                    self.task, description=f"{backend}/{point['architecture']} {label}"
                )
            case Measured():
                self.progress.advance(self.task)
