"""`bench run` and `bench worker`: from a study file to searched, re-trained and tracked models.

The pipeline of one study run, each step in a module of its own:

    places.py    where the run reads and writes (output folder, dataset, the two stores)
    searches.py  every (architecture, backend) searched to its budget, a process per trial
    retrain.py   each search's best configuration on fresh seeds and on the other backend(s)
    tracked.py   one job, run apart from this process, recorded as its MLflow run
    isolation.py how a job is kept apart: a warm worker (serve.py) or a fresh process (trial.py)
    pool.py      the worker slots running those jobs, and Ctrl-C
    jobs.py      the child-process protocol itself, with the events of events.py

Work is done by worker slots: ``--workers N`` on one machine, and any number of `bench worker`
processes on other machines, all sharing the same Optuna storage and MLflow store. Re-running
the same command skips whatever already finished.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from harness import identity, search
from harness.errors import BenchError
from harness.run.artifacts import Artifacts
from harness.run.context import RunContext
from harness.run.events import Event, EventHandler
from harness.run.isolation import ISOLATIONS, make_isolation
from harness.run.places import RunPlaces
from harness.run.pool import WorkerPool
from harness.run.retrain import Retraining
from harness.run.searches import Search, Searches
from harness.run.tracked import TrackedJobs
from harness.stores import password_environment
from harness.tracking import Tracker

if TYPE_CHECKING:
    from harness.study.schema import Study


class StudyRunner:
    """One process's share of a study run; `on_event` (the terminal) may be set after opening."""

    def __init__(
        self,
        study: Study,
        places: RunPlaces,
        on_event: EventHandler,
        workers: int = 1,
        isolation: str = ISOLATIONS[0],
    ) -> None:
        self.study = study
        self.places = places
        self.on_event = on_event
        self.pool = WorkerPool(workers, password_environment(places.storage_url))
        self.storage = search.open_storage(places.storage_url)
        self.tracker = Tracker(
            places.tracking_uri,
            study.name,
            places.out / "artifacts",
            run_tags={identity.DIGEST_KEY: identity.study_digest(study)},
        )
        identity.check_identity(study, self.tracker, self.storage)
        (places.out / "jobs").mkdir(parents=True, exist_ok=True)
        self.isolation = make_isolation(isolation, self.pool, places.out / "jobs" / "workers")
        self.artifacts = Artifacts(self.tracker, background=bool(self.pool.gpus))
        self.artifacts.recover()  # figures an earlier, killed process of the study left undrawn
        jobs = TrackedJobs(
            self.tracker, places.data, self.pool, self.isolation, self.artifacts, self.report
        )
        context = RunContext(
            study, places, self.storage, self.tracker, self.pool, jobs, self.report
        )
        self.searches = Searches(context)
        self.retraining = Retraining(context)

    def report(self, event: Event) -> None:
        self.on_event(event)  # looked up on each event: the terminal arrives after opening

    def run(self) -> None:
        """`bench run`: every search to its budget, then the re-trainings."""
        with self.closing():
            self.retraining.run_all(self.searches.run_all())

    def search_all(self) -> list[Search]:
        """`bench worker`: every search to its budget, on all worker slots."""
        with self.closing():
            return self.searches.run_all()

    @contextlib.contextmanager
    def closing(self) -> Iterator[None]:
        """However the run ends, warm workers leave with it and every finished run gets its
        artifacts; after an interrupt, a failed upload does not hide the interrupt."""
        try:
            yield
        except BaseException:
            try:
                self.isolation.close()
            finally:
                with contextlib.suppress(BenchError):
                    self.artifacts.drain()
            raise
        try:
            self.isolation.close()
        finally:
            self.artifacts.drain()


def planned_jobs(study: Study, retrain: bool = True) -> int:
    """Trials plus re-trainings the study will run in all, for the progress bar."""
    searches = len(study.architectures) * len(study.backends)
    targets = len(study.backends) if study.retrain.cross_backend else 1
    trials = study.budget.trials or 0
    # A study that searches re-trains its defaults once per architecture (`run.retrain`); where
    # a search chose them, those jobs are counted as skipped.
    defaults = len(study.architectures) * study.retrain.seeds if retrain and study.searched else 0
    return searches * (trials + (targets * study.retrain.seeds if retrain else 0)) + defaults
