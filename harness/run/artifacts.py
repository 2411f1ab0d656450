"""A run's figures, drawn and uploaded off the training path.

Drawing a learning curve and a confusion matrix and uploading them takes a few tenths of a
second per run, which a study of hundreds of short runs would otherwise pay between every two.
So `Artifacts` takes them as each run ends (its MLflow run is already closed with its status,
metrics and text files) and does the work where it cannot slow a timed run:

- on a GPU machine, in a background thread while the next run trains on the GPU;
- on a CPU-only machine, once no run trains any more (when `drain` is called at the end of the
  study, also after Ctrl-C), since drawing would take CPU time from the run being timed.

Nothing is lost if the process dies first: a run waiting for its figures carries the tag
`figures_pending` (its job folder, whose outcome.json holds what they show), and the next
`bench run` or `bench worker` of the study draws them (`recover`). Every upload that fails is
reported by `drain`, which `bench run` calls before its report.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from harness.errors import BenchError
from harness.tracking import Tracker

DPI = 110
PENDING = "figures_pending"  # the tag on a run whose figures are not attached yet: its job folder


class Artifacts:
    """The figures and uploads of finished runs, waiting for their turn."""

    def __init__(self, tracker: Tracker, background: bool) -> None:
        self.tracker = tracker
        self.background = background
        self.waiting: queue.Queue[Callable[[], None]] = queue.Queue()
        self.errors: list[str] = []
        if background:
            threading.Thread(target=self._work, name="artifacts", daemon=True).start()

    def add(self, run_id: str, folder: Path, title: str) -> None:
        """Draw the figures of the run whose job folder is `folder` (its outcome.json), then
        attach them to the run."""
        self.tracker.set_tags(run_id, **{PENDING: str(folder)})

        def upload() -> None:
            figures = draw(folder, title)
            self.tracker.log_artifacts(run_id, figures)
            self.tracker.delete_tag(run_id, PENDING)

        self.waiting.put(upload)

    def recover(self) -> int:
        """Queue again the figures that an earlier process of the study left undrawn (it was
        killed first); those whose job folder is on another machine are left to it."""
        recovered = 0
        for run in self.tracker.runs_tagged(PENDING):
            folder, tags = Path(run.data.tags[PENDING]), run.data.tags
            if (folder / "outcome.json").is_file():
                self.add(
                    run.info.run_id,
                    folder,
                    title(tags["architecture"], tags["backend"], tags["seed"]),
                )
                recovered += 1
        return recovered

    def drain(self) -> None:
        """Finish everything waiting; an upload that failed is one line of error."""
        if self.background:
            self.waiting.join()
        else:
            while not self.waiting.empty():
                self._one(self.waiting.get())
        if self.errors:
            failed, self.errors = self.errors, []
            raise BenchError(f"{len(failed)} run(s) kept no artifacts: {failed[0]}")

    def _work(self) -> None:
        while True:
            self._one(self.waiting.get())

    def _one(self, upload: Callable[[], None]) -> None:
        try:
            upload()
        except Exception as error:  # noqa: BLE001 - reported by drain; the runs stay recorded
            self.errors.append(f"{type(error).__name__}: {error}".splitlines()[0])
        finally:
            self.waiting.task_done()


def title(architecture: object, backend: object, seed: object) -> str:
    return f"{architecture} on {backend} (seed {seed})"


def draw(folder: Path, heading: str) -> list[str]:
    """The run's figures as files in `folder`, from its outcome.json: its learning curves, and
    its confusion matrix when it has one."""
    import numpy as np

    from harness.report import charts
    from harness.run.trial import Outcome

    outcome = Outcome.read(folder / "outcome.json")
    figures = {}
    if outcome.epochs:
        figures["learning_curves.png"] = charts.learning_curves(outcome.epochs, heading)
    if outcome.confusion is not None:
        figures["confusion_matrix.png"] = charts.confusion_matrix(np.array(outcome.confusion))
    for name, figure in figures.items():
        figure.savefig(folder / name, dpi=DPI)
    return [str(folder / name) for name in figures]
