"""A run's figures and files, drawn and uploaded off the training path.

Drawing a learning curve and a confusion matrix and uploading them takes a few tenths of a
second per run, which a study of hundreds of short runs would otherwise pay between every two.
So `Artifacts` takes them as each run ends (its MLflow run is already closed with its status
and metrics) and does the work where it cannot slow a timed run:

- on a GPU machine, in a background thread while the next run trains on the GPU;
- on a CPU-only machine, once no run trains any more (when `drain` is called at the end of the
  study, also after Ctrl-C), since drawing would take CPU time from the run being timed.

Every upload that fails is reported by `drain`, which `bench run` calls before its report.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from harness.errors import BenchError
from harness.tracking import Tracker

DPI = 110


class Artifacts:
    """The figures and uploads of finished runs, waiting for their turn."""

    def __init__(self, tracker: Tracker, background: bool) -> None:
        self.tracker = tracker
        self.background = background
        self.waiting: queue.Queue[Callable[[], None]] = queue.Queue()
        self.errors: list[str] = []
        if background:
            threading.Thread(target=self._work, name="artifacts", daemon=True).start()

    def add(
        self,
        run_id: str,
        folder: Path,
        files: list[str],
        epochs: list[dict[str, float]],
        confusion: list[list[int]] | None,
        title: str,
    ) -> None:
        """Draw the run's figures into `folder`, then attach them and `files` to its run."""

        def upload() -> None:
            figures = draw(folder, epochs, confusion, title)
            self.tracker.log_artifacts(run_id, [*files, *figures])

        self.waiting.put(upload)

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


def draw(
    folder: Path, epochs: list[dict[str, float]], confusion: list[list[int]] | None, title: str
) -> list[str]:
    """The run's figures as files in `folder`: its learning curves, and its confusion matrix."""
    import numpy as np

    from harness.report import charts

    figures = {"learning_curves.png": charts.learning_curves(epochs, title)} if epochs else {}
    if confusion is not None:
        figures["confusion_matrix.png"] = charts.confusion_matrix(np.array(confusion))
    for name, figure in figures.items():
        figure.savefig(folder / name, dpi=DPI)
    return [str(folder / name) for name in figures]
