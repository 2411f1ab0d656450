"""What every part of one process's study run shares: the study, its places and stores, the
worker slots, the tracked jobs and where events go. Built once by `StudyRunner`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import search
    from harness.run.events import EventHandler
    from harness.run.places import RunPlaces
    from harness.run.pool import WorkerPool
    from harness.run.tracked import TrackedJobs
    from harness.study.schema import Study
    from harness.tracking import Tracker


@dataclass(frozen=True)
class RunContext:
    study: Study
    places: RunPlaces
    storage: search.Storage
    tracker: Tracker
    pool: WorkerPool
    jobs: TrackedJobs  # a job's process, turned into its MLflow run
    on_event: EventHandler
